//! Prints the encoded size per item of every benchmark request (used to tune the fixtures).

use sightline_core::Signal;
use sightline_microbench::catalog::identities;
use sightline_microbench::requests::{ITEMS, RESOURCES, Size, encoded};

fn main() {
    let ids = identities(40, 500, RESOURCES);
    for signal in Signal::ALL {
        for size in Size::ALL {
            let buf = encoded(signal, &ids, ITEMS, size, 1);
            let empty = encoded(signal, &ids, 0, size, 1);
            println!(
                "{signal:>7} {:>5}: {:>8} bytes, {:>6.0} B/item (items only: {:>6.0} B/item)",
                size.as_str(),
                buf.len(),
                buf.len() as f64 / ITEMS as f64,
                (buf.len() - empty.len()) as f64 / ITEMS as f64
            );
        }
    }
}
