//! Compiles the C++ shim over libtorch's JIT (`csrc/`) beside tch.
//!
//! `torch-sys` (with `links = "tch"`) hands us the libtorch folder as
//! `DEP_TCH_LIBTORCH_LIB`. We pass it on as `DEP_YOLOTS_SHIM_LIBTORCH_LIB` so that crates
//! producing binaries can embed the same folder as an rpath (see `backend/build.rs`).

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=csrc");
    let lib = PathBuf::from(
        env::var("DEP_TCH_LIBTORCH_LIB")
            .expect("torch-sys did not report the libtorch folder; run `cargo xtask setup`"),
    );
    let include = lib.join("../include");
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .file("csrc/shim.cpp")
        .compile("yolots_shim");
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=torch_cpu");
    println!("cargo:rustc-link-lib=c10");
    // Our own tests and examples find libtorch without LD_LIBRARY_PATH.
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    // `libtorch_cuda` is not linked: the converter loads it at run time when a driver is
    // present (src/cuda_backend.rs), so CPU conversions never map the CUDA stack.
    println!("cargo:libtorch_lib={}", lib.display());
}
