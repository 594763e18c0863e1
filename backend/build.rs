//! Embeds the libtorch folder as an rpath so `yolots` runs without LD_LIBRARY_PATH.
//!
//! `yolots-converter` (with `links = "yolots_shim"`) reports the folder it linked against.
//! `--no-as-needed` keeps `libtorch_cuda` as a dependency even though no symbol of it is
//! referenced directly; without it libtorch never registers its CUDA backend.

use std::env;
use std::path::PathBuf;

fn main() {
    let Ok(lib) = env::var("DEP_YOLOTS_SHIM_LIBTORCH_LIB") else {
        return;
    };
    let lib = PathBuf::from(lib);
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}
