//! The one error type of the `veil-sim` library.

use std::path::{Path, PathBuf};

/// Everything that can go wrong in the `veil` command, each naming the file or device involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file system operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// An input could not be decoded (corrupt, truncated or unsupported).
    #[error("{}: cannot decode: {msg}", path.display())]
    Decode {
        /// The input.
        path: PathBuf,
        /// What the decoder said.
        msg: String,
    },
    /// An output could not be encoded.
    #[error("{}: cannot encode: {msg}", path.display())]
    Encode {
        /// The output.
        path: PathBuf,
        /// What the encoder said.
        msg: String,
    },
    /// `ffmpeg` or `ffprobe` is missing or failed.
    #[error("{}: ffmpeg: {msg}", path.display())]
    Ffmpeg {
        /// The video being read or written.
        path: PathBuf,
        /// What went wrong.
        msg: String,
    },
    /// The ONNX Runtime shared library could not be found or loaded.
    #[error(
        "ONNX Runtime library unavailable at {}: {msg} (run `cargo xtask setup`, or set ORT_DYLIB_PATH \
         to libonnxruntime.so)",
        path.display()
    )]
    OrtLibrary {
        /// Where it was looked for.
        path: PathBuf,
        /// Why it failed.
        msg: String,
    },
    /// A model file is missing.
    #[error("model file {} not found (run `cargo xtask setup`, or pass --model PATH)", path.display())]
    ModelMissing {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// A model could not be loaded or run.
    #[error("model {}: {msg}", path.display())]
    Model {
        /// The model file.
        path: PathBuf,
        /// What went wrong.
        msg: String,
    },
    /// The requested detector is not available in this build.
    #[error("detector `{name}` is not available: {why}")]
    DetectorUnavailable {
        /// Detector name.
        name: String,
        /// Why.
        why: String,
    },
    /// A camera could not be opened or read.
    #[error("camera {index}: {msg}")]
    Camera {
        /// Camera index.
        index: u32,
        /// What went wrong.
        msg: String,
    },
    /// The preview window could not be opened.
    #[error("preview window: {0}")]
    Preview(String),
    /// A command-line value is invalid.
    #[error("invalid {what}: {msg}")]
    Usage {
        /// Which option.
        what: &'static str,
        /// What is wrong with it.
        msg: String,
    },
    /// Writing this output would overwrite one of the inputs.
    #[error("{}: refusing to overwrite an input", path.display())]
    WouldOverwriteInput {
        /// The output path.
        path: PathBuf,
    },
    /// The output already exists (use `--force` to replace it).
    #[error("{}: output exists (use --force to replace it)", path.display())]
    OutputExists {
        /// The output path.
        path: PathBuf,
    },
    /// The output lies inside an input folder.
    #[error("{}: output is inside the input tree {} (pass --allow-inside-input to allow)", output.display(), input.display())]
    InsideInput {
        /// The output.
        output: PathBuf,
        /// The input folder containing it.
        input: PathBuf,
    },
    /// Two inputs map to the same output.
    #[error("{}: two inputs would be written to this output", path.display())]
    DuplicateOutput {
        /// The output path.
        path: PathBuf,
    },
    /// The file type is not an image or video this tool handles.
    #[error("{}: not a supported image or video ({why})", path.display())]
    Unsupported {
        /// The input.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// The pipeline configuration was rejected by `veil-core`.
    #[error("pipeline configuration: {0}")]
    Config(String),
    /// A frame layout was rejected by `veil-core`.
    #[error("{}: frame rejected: {msg}", path.display())]
    Frame {
        /// The input.
        path: PathBuf,
        /// Why.
        msg: String,
    },
    /// A label file is malformed.
    #[error("{}:{line}: {msg}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        msg: String,
    },
    /// An image's size differs from the one its labels state.
    #[error("{}: image is {got_w}x{got_h} but its labels say {want_w}x{want_h}", path.display())]
    SizeMismatch {
        /// The image.
        path: PathBuf,
        /// Decoded width.
        got_w: u32,
        /// Decoded height.
        got_h: u32,
        /// Labelled width.
        want_w: u32,
        /// Labelled height.
        want_h: u32,
    },
    /// The pipeline failed on an image under evaluation.
    #[error("{}: pipeline: {msg}", path.display())]
    Pipeline {
        /// The image.
        path: PathBuf,
        /// What failed.
        msg: String,
    },
    /// The residual detector of `veil eval` failed on an image.
    #[error("{}: residual detector: {msg}", path.display())]
    Residual {
        /// The image.
        path: PathBuf,
        /// What failed.
        msg: String,
    },
    /// Some files of a batch failed (each was reported as it happened).
    #[error("{failed} of {total} inputs failed")]
    BatchFailed {
        /// Number of failed inputs.
        failed: usize,
        /// Number of inputs.
        total: usize,
    },
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io { path: path.as_ref().to_path_buf(), source }
    }
    /// A parse error at 1-based `line` of `path`.
    pub fn parse(path: &Path, line: usize, msg: impl Into<String>) -> Self {
        Error::Parse { path: path.to_path_buf(), line, msg: msg.into() }
    }
    /// A usage error.
    pub fn usage(what: &'static str, msg: impl Into<String>) -> Self {
        Error::Usage { what, msg: msg.into() }
    }
}

/// Attach a path to `std::io` results.
pub trait IoContext<T> {
    /// Map the error to [`Error::Io`] on `path`.
    fn at(self, path: impl AsRef<Path>) -> Result<T>;
}

impl<T> IoContext<T> for std::result::Result<T, std::io::Error> {
    fn at(self, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}
