//! # veil-sim: the `veil` command
//!
//! Runs exactly `veil-core`'s pipeline (detect → track → redact → evidence) on a desktop: still
//! images of every format the `image` crate reads, folders (recursively, keeping the tree),
//! video files through `ffmpeg`, and webcams through `nokhwa`, with an optional live preview.
//! Detectors: the built-in int8 engine, or ONNX models (CenterFace, RetinaFace) through ONNX
//! Runtime, whose float outputs become integer detections at the `Detector` boundary.
//!
//! Modules: [`cli`] (options), [`batch`] (walk, shard, temporary file + rename),
//! [`io_image`], [`io_video`], [`camera`], [`preview`], [`detectors`], [`engine`] (pipeline
//! driver), [`report`] (JSON lines, evidence, summary), [`eval`] (anonymisation measured on
//! labelled images), [`synth`] (labelled synthetic images), [`app`] (the commands).
#![warn(missing_docs)]

pub mod app;
pub mod batch;
pub mod camera;
pub mod cli;
pub mod detectors;
pub mod engine;
pub mod error;
pub mod eval;
pub mod io_image;
pub mod io_video;
pub mod preview;
pub mod report;
pub mod synth;

pub use error::{Error, Result};
