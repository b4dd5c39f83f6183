//! The one logging shim: `defmt` (feature `defmt`), else `log` (feature `log`), else nothing.
//!
//! Every message in the crate goes through these macros so the firmware build chooses its
//! transport in one place. Arguments must implement both `defmt::Format` and `core::fmt::Debug`
//! when both features may be enabled; keep them to integers and the crate's own enums.

#[cfg(feature = "defmt")]
macro_rules! veil_warn {
    ($($arg:tt)*) => { ::defmt::warn!($($arg)*) };
}
#[cfg(all(feature = "log", not(feature = "defmt")))]
macro_rules! veil_warn {
    ($($arg:tt)*) => { ::log::warn!($($arg)*) };
}
#[cfg(not(any(feature = "log", feature = "defmt")))]
macro_rules! veil_warn {
    ($($arg:tt)*) => {{
        // Type-check the arguments without emitting anything.
        if false {
            let _ = ::core::format_args!($($arg)*);
        }
    }};
}

#[cfg(feature = "defmt")]
#[allow(unused_macros)]
macro_rules! veil_debug {
    ($($arg:tt)*) => { ::defmt::debug!($($arg)*) };
}
#[cfg(all(feature = "log", not(feature = "defmt")))]
#[allow(unused_macros)]
macro_rules! veil_debug {
    ($($arg:tt)*) => { ::log::debug!($($arg)*) };
}
#[cfg(not(any(feature = "log", feature = "defmt")))]
#[allow(unused_macros)]
macro_rules! veil_debug {
    ($($arg:tt)*) => {{
        if false {
            let _ = ::core::format_args!($($arg)*);
        }
    }};
}
