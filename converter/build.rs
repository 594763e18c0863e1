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
    // `--no-as-needed` keeps `libtorch_cuda` as a dependency of the binary even though no
    // symbol of it is referenced directly; without it libtorch never registers its CUDA
    // backend.
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg-bins=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
    println!("cargo:libtorch_lib={}", lib.display());
}
