//! libFuzzer entry point of the `api_request` target; the body is `dwell_fuzz_targets::api_request`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = dwell_fuzz_targets::api_request(data);
});
