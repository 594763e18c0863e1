//! Declarations of the C++ shim (`csrc/shim.cpp`) and safe helpers around its strings.
//!
//! The safe wrappers live in [`crate::jit`]; nothing outside it calls these directly.

use std::ffi::{CStr, c_char, c_int, c_void};

use torch_sys::C_tensor;

/// `std::shared_ptr<torch::jit::CompilationUnit>` behind a pointer.
#[repr(C)]
pub(crate) struct Cu {
    _private: [u8; 0],
}

/// `torch::jit::Module`.
#[repr(C)]
pub(crate) struct Module {
    _private: [u8; 0],
}

/// `torch::jit::mobile::Module`.
#[repr(C)]
pub(crate) struct Mobile {
    _private: [u8; 0],
}

/// `std::vector<at::Tensor>` the tracer collects outputs in.
#[repr(C)]
pub(crate) struct TensorSink {
    _private: [u8; 0],
}

/// One argument of a mobile method call (mirrors `YolotsArg`).
#[repr(C)]
pub(crate) struct Arg {
    /// 0 tensor, 1 float, 2 int.
    pub kind: c_int,
    pub tensor: *const C_tensor,
    pub f: f64,
    pub i: i64,
}

/// The tracer's callback: runs the eager network on `inputs` and pushes its outputs.
pub(crate) type TraceFn = unsafe extern "C" fn(
    ctx: *mut c_void,
    inputs: *const *const C_tensor,
    n: c_int,
    outputs: *mut TensorSink,
) -> c_int;

unsafe extern "C" {
    fn yolots_take_error() -> *mut c_char;
    fn yolots_free_string(s: *mut c_char);
    pub(crate) fn yolots_show_config() -> *mut c_char;

    pub(crate) fn yolots_cu_new() -> *mut Cu;
    pub(crate) fn yolots_cu_free(cu: *mut Cu);

    pub(crate) fn yolots_module_new(cu: *mut Cu, qualified_name: *const c_char) -> *mut Module;
    pub(crate) fn yolots_module_instance(like: *const Module) -> *mut Module;
    pub(crate) fn yolots_module_free(m: *mut Module);
    pub(crate) fn yolots_module_register_tensor(
        m: *mut Module,
        name: *const c_char,
        t: *const C_tensor,
        is_buffer: c_int,
    ) -> c_int;
    pub(crate) fn yolots_module_register_module(
        m: *mut Module,
        name: *const c_char,
        child: *const Module,
    ) -> c_int;
    pub(crate) fn yolots_module_set_bool(m: *mut Module, name: *const c_char, v: c_int) -> c_int;
    pub(crate) fn yolots_module_set_int(m: *mut Module, name: *const c_char, v: i64) -> c_int;
    pub(crate) fn yolots_module_set_float(m: *mut Module, name: *const c_char, v: f64) -> c_int;
    pub(crate) fn yolots_module_set_ints(
        m: *mut Module,
        name: *const c_char,
        values: *const i64,
        n: c_int,
    ) -> c_int;
    pub(crate) fn yolots_module_set_floats(
        m: *mut Module,
        name: *const c_char,
        values: *const f64,
        n: c_int,
    ) -> c_int;
    pub(crate) fn yolots_module_set_strings(
        m: *mut Module,
        name: *const c_char,
        values: *const *const c_char,
        n: c_int,
    ) -> c_int;
    pub(crate) fn yolots_module_define(m: *mut Module, src: *const c_char) -> c_int;
    pub(crate) fn yolots_module_save(
        m: *const Module,
        path: *const c_char,
        names: *const *const c_char,
        data: *const *const c_char,
        lens: *const usize,
        n: c_int,
    ) -> c_int;
    pub(crate) fn yolots_module_save_for_mobile(
        m: *const Module,
        path: *const c_char,
        names: *const *const c_char,
        data: *const *const c_char,
        lens: *const usize,
        n: c_int,
    ) -> c_int;
    pub(crate) fn yolots_module_freeze(
        m: *const Module,
        preserved: *const *const c_char,
        n: c_int,
    ) -> *mut Module;
    pub(crate) fn yolots_module_optimize_frozen(
        m: *mut Module,
        methods: *const *const c_char,
        n: c_int,
    ) -> c_int;
    pub(crate) fn yolots_tensor_channels_last(t: *const C_tensor) -> c_int;
    pub(crate) fn yolots_module_optimize_for_mobile(
        m: *const Module,
        methods: *const *const c_char,
        n: c_int,
    ) -> *mut Module;
    pub(crate) fn yolots_module_graphs(m: *const Module) -> *mut c_char;

    pub(crate) fn yolots_set_error(message: *const c_char);
    pub(crate) fn yolots_sink_push(sink: *mut TensorSink, t: *const C_tensor);
    pub(crate) fn yolots_module_trace(
        m: *mut Module,
        name: *const c_char,
        inputs: *const *const C_tensor,
        n: c_int,
        f: TraceFn,
        ctx: *mut c_void,
    ) -> c_int;

    pub(crate) fn yolots_mobile_load(path: *const c_char) -> *mut Mobile;
    pub(crate) fn yolots_mobile_free(m: *mut Mobile);
    pub(crate) fn yolots_mobile_run(
        m: *mut Mobile,
        method: *const c_char,
        args: *const Arg,
        nargs: c_int,
        out: *mut *mut *mut C_tensor,
        nout: *mut c_int,
    ) -> c_int;
    pub(crate) fn yolots_free_tensor_array(array: *mut *mut C_tensor);
}

/// Takes ownership of a string the shim allocated; `None` for a null pointer.
///
/// # Safety
/// `ptr` must be null or a string returned by the shim that was not freed yet.
pub(crate) unsafe fn take_string(ptr: *mut c_char) -> Option<String> {
    if ptr.is_null() {
        return None;
    }
    // SAFETY: the shim returns NUL-terminated strings it allocated with malloc.
    let text = unsafe { CStr::from_ptr(ptr) }
        .to_string_lossy()
        .into_owned();
    // SAFETY: the pointer came from the shim and is freed exactly once here.
    unsafe { yolots_free_string(ptr) };
    Some(text)
}

/// The message libtorch gave for the last failed shim call on this thread.
pub(crate) fn last_error() -> String {
    // SAFETY: the shim returns an owned copy of its thread-local message.
    unsafe { take_string(yolots_take_error()) }.unwrap_or_else(|| "unknown libtorch error".into())
}
