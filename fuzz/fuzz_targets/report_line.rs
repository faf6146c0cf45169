//! libFuzzer entry point of the `report_line` target; the body is `dwell_fuzz_targets::report_line`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = dwell_fuzz_targets::report_line(data);
});
