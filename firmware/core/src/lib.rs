//! # veil-core: on-device anonymisation, `no_std`, no heap
//!
//! Data flow of one camera frame:
//!
//! ```text
//!  caller's buffer ──► frame::FrameMut::new_checked ──► detect::Detector (e.g. nn::BuiltinDetector)
//!                                                            │ heapless::Vec<Detection, N>
//!                                                            ▼
//!                  detect::postprocess (thresholds, size limits, exclusion zones, NMS)
//!                                                            ▼
//!                  track::Tracker<N> (IoU association, hold time, velocity growth)
//!                                                            ▼
//!                  redact::redact (fill / pixelate / blur / noise, dilated, clipped)
//!                                                            ▼
//!                  evidence::Record (SHA-256 chained, fixed layout) + pipeline::Redacted frame
//! ```
//!
//! [`pipeline::Pipeline`] ties the stages together and **fails closed**: a detector error, a
//! deadline overrun or more detections than capacity redact the whole frame, and the evidence
//! record says so. Only a [`pipeline::Redacted`] frame comes out of the pipeline.
//!
//! The crate never opens a file, reads a clock or allocates: callers own every buffer and pass the
//! time in. Capacities are const generics. All arithmetic in the pipeline is integer or
//! fixed-point, so a Cortex-M7 and a desktop give bit-identical results.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(test)]
extern crate std;

#[macro_use]
mod log;

pub mod detect;
pub mod evidence;
pub mod frame;
pub mod nn;
pub mod pipeline;
pub mod redact;
pub mod track;

pub use detect::{Class, Detection, Detector};
pub use frame::{Frame, FrameMut, Layout, PixelFormat, Rect};
pub use pipeline::{Config, Pipeline, Redacted};
