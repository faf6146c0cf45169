//! libFuzzer entry point of the `label_selector` target; the body is `dwell_fuzz_targets::label_selector`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = dwell_fuzz_targets::label_selector(data);
});
