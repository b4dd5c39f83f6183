//! 3×3 depthwise convolution with AVX2.

use pulp::x86::V3;

use super::{with_avx2, ConvArgs, Kernel};
use crate::nn::NnError;

/// The portable 3×3 depthwise kernel ([`crate::nn::depthwise`]) compiled for AVX2.
pub(in crate::nn) fn conv_dw3x3(s: V3, a: ConvArgs<'_>) -> Result<(), NnError> {
    struct Dw;
    impl Kernel for Dw {
        #[inline(always)]
        fn run(_: V3, a: ConvArgs<'_>) -> Result<(), NnError> {
            crate::nn::depthwise::conv_dw3x3(
                a.input, a.iv, a.output, a.ov, a.g, a.weights, a.params, a.pad, a.zp_out,
            )
        }
    }
    with_avx2::<Dw>(s, a)
}
