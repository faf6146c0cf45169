//! libFuzzer entry point of the `report_http` target; the body is `dwell_fuzz_targets::report_http`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = dwell_fuzz_targets::report_http(data);
});
