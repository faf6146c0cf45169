//! libFuzzer entry point of the `tap` target; the body is `dwell_fuzz_targets::tap`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = dwell_fuzz_targets::tap(data);
});
