//! Veil on a Cortex-M7 board (Arm MPS2 AN500, as QEMU models it).
//!
//! The binary plays a camera: it copies a 320×240 RGB frame (`assets/`) into a RAM frame buffer,
//! runs the `veil-core` pipeline with the built-in int8 face and plate models on it, and reports
//! over semihosting what a host needs to check the device against its own run of the same
//! pipeline (detections, regions digest, evidence record) and how many instructions each stage
//! took. Under `qemu-system-arm -icount shift=0` one instruction is one nanosecond of virtual time,
//! and SysTick runs at the board's 25 MHz, so one tick is 40 instructions.
//!
//! A second frame is processed with a 1 µs deadline, which the detector cannot meet: the device
//! must fail closed and redact the whole frame.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::{entry, exception};
use cortex_m_semihosting::{debug, hprint, hprintln};
use veil_core::evidence::Record;
use veil_core::frame::{FrameMut, Layout, PixelFormat};
use veil_core::nn::{BuiltinDetector, DetectorConfig};
use veil_core::pipeline::{Config, Pipeline};

const W: u32 = 320;
const H: u32 = 240;
const FRAME_LEN: usize = (W * H * 3) as usize;
const ARENA_LEN: usize = 1536 * 1024;
/// SysTick ticks at 25 MHz; instructions per tick under `-icount shift=0`.
const INSNS_PER_TICK: u64 = 40;
const RELOAD: u32 = 0x00FF_FFFF;

#[repr(C, align(16))]
struct Aligned<B: ?Sized>(B);

static FACE: &Aligned<[u8]> = &Aligned(*include_bytes!("../../../models/int8/retinaface-mnet025.vlnn"));
static PLATE: &Aligned<[u8]> = &Aligned(*include_bytes!("../../../models/int8/clp-det.vlnn"));
static CAMERA: &[u8; FRAME_LEN] = include_bytes!("../assets/frame-320x240.rgb");

static mut FRAME_BUF: [u8; FRAME_LEN] = [0; FRAME_LEN];
static mut ARENA: Aligned<[u8; ARENA_LEN]> = Aligned([0; ARENA_LEN]);

static WRAPS: AtomicU32 = AtomicU32::new(0);

#[exception]
fn SysTick() {
    WRAPS.fetch_add(1, Ordering::Relaxed);
}

/// Ticks since boot (24-bit SysTick extended by the wrap count).
fn ticks() -> u64 {
    loop {
        let w1 = WRAPS.load(Ordering::Acquire);
        let cur = cortex_m::peripheral::SYST::get_current();
        let w2 = WRAPS.load(Ordering::Acquire);
        if w1 == w2 {
            return w1 as u64 * (RELOAD as u64 + 1) + (RELOAD - cur) as u64;
        }
    }
}

/// Virtual microseconds: ticks × 40 ns.
fn now_us() -> u64 {
    ticks() * INSNS_PER_TICK / 1000
}

fn hex(bytes: &[u8]) {
    for b in bytes {
        hprint!("{:02x}", b);
    }
}

fn report(label: &str, record: &Record, regions: &[veil_core::pipeline::Region], insns: u64) {
    hprint!("{} outcome={} regions={} insns={} digest=", label, record.outcome.name(), record.regions, insns);
    hex(&record.regions_digest);
    hprintln!("");
    for r in regions {
        hprintln!("region {} {} {} {} {}", r.class.name(), r.rect.x0, r.rect.y0, r.rect.x1, r.rect.y1);
    }
    hprint!("record ");
    hex(&record.emit());
    hprintln!("");
}

fn fail(msg: &str) -> ! {
    hprintln!("VEIL-BOARD-FAIL {}", msg);
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::nop();
    }
}

#[entry]
fn main() -> ! {
    let mut cp = cortex_m::Peripherals::take().unwrap_or_else(|| fail("peripherals"));
    cp.SYST.set_clock_source(SystClkSource::Core);
    cp.SYST.set_reload(RELOAD);
    cp.SYST.clear_current();
    cp.SYST.enable_interrupt();
    cp.SYST.enable_counter();

    // SAFETY: `main` runs once and these are the only references ever made to the two buffers.
    let frame_buf: &'static mut [u8; FRAME_LEN] = unsafe { &mut *core::ptr::addr_of_mut!(FRAME_BUF) };
    let arena: &'static mut [u8] = unsafe { &mut (*core::ptr::addr_of_mut!(ARENA)).0 };

    let cfg = DetectorConfig::default(); // 320×256 model input: the 320×240 frame is letterboxed
    let detector = match BuiltinDetector::new(Some(&FACE.0), Some(&PLATE.0), arena, cfg) {
        Ok(d) => d,
        Err(e) => {
            hprintln!("VEIL-BOARD-FAIL detector: {:?}", e);
            fail("model or arena")
        }
    };
    hprint!("veil-board model=");
    hex(&veil_core::Detector::model_id(&detector));
    hprintln!("");

    let mut pipeline: Pipeline<_, 32> = match Pipeline::new(detector, Config::default()) {
        Ok(p) => p,
        Err(_) => fail("config"),
    };
    let layout = Layout::new(PixelFormat::Rgb888, W, H);

    // Frame 0: normal processing.
    frame_buf.copy_from_slice(CAMERA);
    let t0 = ticks();
    let frame = FrameMut::new_checked(&mut frame_buf[..], layout).unwrap_or_else(|_| fail("layout"));
    let out = pipeline.process(&mut now_us, frame);
    let insns = (ticks() - t0) * INSNS_PER_TICK;
    let record = out.record;
    report("frame0", &record, pipeline.regions(), insns);
    for d in pipeline.detections() {
        hprintln!(
            "det {} {} {} {} {} {}",
            d.class.name(),
            d.rect.x0,
            d.rect.y0,
            d.rect.x1,
            d.rect.y1,
            d.score
        );
    }

    // Frame 1: a deadline no detector can meet ⇒ fail closed, whole frame redacted.
    let detector = pipeline.into_detector();
    let strict = Config { deadline_us: 1, ..Config::default() };
    let mut pipeline: Pipeline<_, 32> =
        match Pipeline::resume(detector, strict, veil_core::evidence::Chain::new()) {
            Ok(p) => p,
            Err(_) => fail("config"),
        };
    frame_buf.copy_from_slice(CAMERA);
    let t0 = ticks();
    let frame = FrameMut::new_checked(&mut frame_buf[..], layout).unwrap_or_else(|_| fail("layout"));
    let out = pipeline.process(&mut now_us, frame);
    let insns = (ticks() - t0) * INSNS_PER_TICK;
    let record = out.record;
    let nonzero = out.frame.as_bytes().iter().filter(|&&b| b != 0).count();
    report("frame1", &record, pipeline.regions(), insns);
    hprintln!("frame1 nonzero_bytes={}", nonzero);

    hprintln!("VEIL-BOARD-OK");
    debug::exit(debug::EXIT_SUCCESS);
    loop {
        cortex_m::asm::nop();
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    // veil-core never panics by design; should anything else, say so and stop the board.
    hprintln!("VEIL-BOARD-PANIC {}", info);
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::nop();
    }
}
