//! libFuzzer entry point of the `report` target; the body is `dwell_fuzz_targets::report`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = dwell_fuzz_targets::report(data);
});
