//! Dense 3×3 convolution of few input channels (the first layer) with AVX2.

use pulp::x86::V3;

use super::ConvArgs;
use crate::nn::ops::{ConvGeom, View};
use crate::nn::NnError;

/// Whether [`conv_first`] takes this convolution.
pub(in crate::nn) fn applies(_iv: &View, _ov: &View, _g: &ConvGeom) -> bool {
    false
}

/// The first-layer kernel (where [`applies`]).
pub(in crate::nn) fn conv_first(_s: V3, _a: ConvArgs<'_>) -> Result<(), NnError> {
    Err(NnError::Malformed)
}
