//! Declarations of the C++ shim (`csrc/shim.cpp`) and safe helpers around its strings.

use std::ffi::{CStr, c_char};

unsafe extern "C" {
    fn yolots_take_error() -> *mut c_char;
    fn yolots_free_string(s: *mut c_char);
    pub(crate) fn yolots_show_config() -> *mut c_char;
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
    let text = unsafe { CStr::from_ptr(ptr) }.to_string_lossy().into_owned();
    // SAFETY: the pointer came from the shim and is freed exactly once here.
    unsafe { yolots_free_string(ptr) };
    Some(text)
}

/// The message libtorch gave for the last failed shim call on this thread.
pub(crate) fn last_error() -> String {
    // SAFETY: the shim returns an owned copy of its thread-local message.
    unsafe { take_string(yolots_take_error()) }.unwrap_or_else(|| "unknown libtorch error".into())
}
