//! Arbitrary bytes must give an IDX array or an error, never a panic or a huge allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(array) = vae_data::parse_idx(std::path::Path::new("fuzz"), data) {
        let expected: usize = array.dims.iter().product();
        assert_eq!(array.data.len(), expected);
    }
});
