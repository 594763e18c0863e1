//! Safe wrappers over the shim: building TorchScript modules by hand, saving them,
//! optimising them, tracing into them, and running the mobile (lite) interpreter.
//!
//! Every failure comes back as a [`ConvertError`] carrying libtorch's message.

use std::ffi::{CString, c_char, c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use tch::Tensor;
use torch_sys::C_tensor;

use crate::error::{ConvertError, Result};
use crate::ffi;

fn cstring(text: &str) -> Result<CString> {
    CString::new(text).map_err(|_| ConvertError::Internal(format!("NUL byte in {text:?}")))
}

fn path_cstring(path: &Path) -> Result<CString> {
    let text = path
        .to_str()
        .ok_or_else(|| ConvertError::Internal(format!("path is not UTF-8: {}", path.display())))?;
    cstring(text)
}

fn check(status: c_int) -> Result<()> {
    if status == 0 {
        Ok(())
    } else {
        Err(ConvertError::Torch(ffi::last_error()))
    }
}

/// Owned C strings and the pointer array the shim reads them through.
struct CStrings {
    _owned: Vec<CString>,
    ptrs: Vec<*const c_char>,
}

impl CStrings {
    fn new<S: AsRef<str>>(items: &[S]) -> Result<Self> {
        let owned = items
            .iter()
            .map(|s| cstring(s.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        let ptrs = owned.iter().map(|s| s.as_ptr()).collect();
        Ok(CStrings {
            _owned: owned,
            ptrs,
        })
    }

    fn len(&self) -> c_int {
        c_int::try_from(self.ptrs.len()).unwrap_or(c_int::MAX)
    }
}

/// Extra files stored in an archive beside the model (`extra/<name>`).
struct ExtraFiles {
    names: CStrings,
    data: Vec<*const c_char>,
    lens: Vec<usize>,
}

impl ExtraFiles {
    fn new(files: &[(&str, &[u8])]) -> Result<Self> {
        let names: Vec<&str> = files.iter().map(|(n, _)| *n).collect();
        Ok(ExtraFiles {
            names: CStrings::new(&names)?,
            data: files.iter().map(|(_, d)| d.as_ptr().cast()).collect(),
            lens: files.iter().map(|(_, d)| d.len()).collect(),
        })
    }
}

/// Lays `t` out channels-last in place when it is a 4-d floating-point tensor (a no-op
/// otherwise). The tensor keeps its identity: whatever holds it (a network, a module it is
/// registered on) sees the new layout, and its old storage is freed with its last user.
pub(crate) fn lay_out_channels_last(t: &Tensor) -> Result<()> {
    // SAFETY: valid tensor; the shim re-points it at new storage of the same values.
    check(unsafe { ffi::yolots_tensor_channels_last(t.as_ptr()) })
}

/// A TorchScript compilation unit: the namespace the classes of one artifact live in.
pub(crate) struct CompilationUnit(*mut ffi::Cu);

impl CompilationUnit {
    pub(crate) fn new() -> Result<Self> {
        // SAFETY: returns an owned pointer or null.
        let ptr = unsafe { ffi::yolots_cu_new() };
        if ptr.is_null() {
            return Err(ConvertError::Torch(ffi::last_error()));
        }
        Ok(CompilationUnit(ptr))
    }
}

impl Drop for CompilationUnit {
    fn drop(&mut self) {
        // SAFETY: owned pointer from `yolots_cu_new`, freed once.
        unsafe { ffi::yolots_cu_free(self.0) }
    }
}

/// A `torch::jit::Module` under construction (or loaded, frozen, optimised).
pub(crate) struct ScriptModule {
    ptr: *mut ffi::Module,
    /// The class name this crate gave it (empty for modules libtorch derived).
    class: String,
}

impl Drop for ScriptModule {
    fn drop(&mut self) {
        // SAFETY: owned pointer from the shim, freed once.
        unsafe { ffi::yolots_module_free(self.ptr) }
    }
}

impl ScriptModule {
    fn from_raw(ptr: *mut ffi::Module) -> Result<Self> {
        if ptr.is_null() {
            Err(ConvertError::Torch(ffi::last_error()))
        } else {
            Ok(ScriptModule {
                ptr,
                class: String::new(),
            })
        }
    }

    /// The class name given at creation (without the namespace).
    pub(crate) fn class(&self) -> &str {
        &self.class
    }

    /// A module of a new class `qualified_name` (for example `__torch__.yolots.Conv`).
    pub(crate) fn new(cu: &CompilationUnit, qualified_name: &str) -> Result<Self> {
        let name = cstring(qualified_name)?;
        // SAFETY: valid compilation unit and C string.
        let mut m = Self::from_raw(unsafe { ffi::yolots_module_new(cu.0, name.as_ptr()) })?;
        m.class = qualified_name
            .rsplit('.')
            .next()
            .unwrap_or(qualified_name)
            .to_owned();
        Ok(m)
    }

    /// A new module of the same class as `like`: it shares `like`'s methods, and what is
    /// registered on it must match the class's attributes.
    pub(crate) fn instance_of(like: &ScriptModule) -> Result<Self> {
        // SAFETY: valid module.
        let mut m = Self::from_raw(unsafe { ffi::yolots_module_instance(like.ptr) })?;
        m.class = like.class.clone();
        Ok(m)
    }

    fn tensor(&mut self, name: &str, tensor: &Tensor, buffer: bool) -> Result<()> {
        let name = cstring(name)?;
        // SAFETY: valid module, C string and tensor; the shim copies the tensor handle.
        check(unsafe {
            ffi::yolots_module_register_tensor(
                self.ptr,
                name.as_ptr(),
                tensor.as_ptr(),
                c_int::from(buffer),
            )
        })
    }

    /// Registers a parameter (it keeps sharing `tensor`'s storage).
    pub(crate) fn parameter(&mut self, name: &str, tensor: &Tensor) -> Result<()> {
        self.tensor(name, tensor, false)
    }

    /// Registers a buffer (a tensor that is state, not a parameter).
    pub(crate) fn buffer(&mut self, name: &str, tensor: &Tensor) -> Result<()> {
        self.tensor(name, tensor, true)
    }

    pub(crate) fn submodule(&mut self, name: &str, child: &ScriptModule) -> Result<()> {
        let name = cstring(name)?;
        // SAFETY: valid modules and C string; the shim shares the child object.
        check(unsafe { ffi::yolots_module_register_module(self.ptr, name.as_ptr(), child.ptr) })
    }

    pub(crate) fn set_bool(&mut self, name: &str, value: bool) -> Result<()> {
        let name = cstring(name)?;
        // SAFETY: valid module and C string.
        check(unsafe { ffi::yolots_module_set_bool(self.ptr, name.as_ptr(), c_int::from(value)) })
    }

    pub(crate) fn set_int(&mut self, name: &str, value: i64) -> Result<()> {
        let name = cstring(name)?;
        // SAFETY: valid module and C string.
        check(unsafe { ffi::yolots_module_set_int(self.ptr, name.as_ptr(), value) })
    }

    pub(crate) fn set_float(&mut self, name: &str, value: f64) -> Result<()> {
        let name = cstring(name)?;
        // SAFETY: valid module and C string.
        check(unsafe { ffi::yolots_module_set_float(self.ptr, name.as_ptr(), value) })
    }

    pub(crate) fn set_ints(&mut self, name: &str, values: &[i64]) -> Result<()> {
        let name = cstring(name)?;
        let n = c_int::try_from(values.len())
            .map_err(|_| ConvertError::Internal("attribute list too long".into()))?;
        // SAFETY: valid module, C string, and `n` readable values.
        check(unsafe { ffi::yolots_module_set_ints(self.ptr, name.as_ptr(), values.as_ptr(), n) })
    }

    pub(crate) fn set_floats(&mut self, name: &str, values: &[f64]) -> Result<()> {
        let name = cstring(name)?;
        let n = c_int::try_from(values.len())
            .map_err(|_| ConvertError::Internal("attribute list too long".into()))?;
        // SAFETY: valid module, C string, and `n` readable values.
        check(unsafe { ffi::yolots_module_set_floats(self.ptr, name.as_ptr(), values.as_ptr(), n) })
    }

    pub(crate) fn set_strings<S: AsRef<str>>(&mut self, name: &str, values: &[S]) -> Result<()> {
        let name = cstring(name)?;
        let values = CStrings::new(values)?;
        // SAFETY: valid module, C string, and `len` C strings.
        check(unsafe {
            ffi::yolots_module_set_strings(
                self.ptr,
                name.as_ptr(),
                values.ptrs.as_ptr(),
                values.len(),
            )
        })
    }

    /// Compiles `source` into methods of this module's class. `class` names the class in
    /// the error; the offending source goes to the debug log.
    pub(crate) fn define(&mut self, class: &str, source: &str) -> Result<()> {
        let src = cstring(source)?;
        // SAFETY: valid module and C string.
        let status = unsafe { ffi::yolots_module_define(self.ptr, src.as_ptr()) };
        if status == 0 {
            return Ok(());
        }
        let message = ffi::last_error();
        tracing::debug!(class, %source, %message, "TorchScript definition failed");
        Err(ConvertError::Script {
            class: class.to_owned(),
            message,
        })
    }

    /// Saves a TorchScript archive with `files` stored as `extra/<name>`.
    pub(crate) fn save(&self, path: &Path, files: &[(&str, &[u8])]) -> Result<()> {
        let p = path_cstring(path)?;
        let extra = ExtraFiles::new(files)?;
        // SAFETY: valid module, C strings and `n` (name, data, len) triples.
        check(unsafe {
            ffi::yolots_module_save(
                self.ptr,
                p.as_ptr(),
                extra.names.ptrs.as_ptr(),
                extra.data.as_ptr(),
                extra.lens.as_ptr(),
                extra.names.len(),
            )
        })
    }

    /// Saves a lite-interpreter (`.ptl`) archive.
    pub(crate) fn save_for_mobile(&self, path: &Path, files: &[(&str, &[u8])]) -> Result<()> {
        let p = path_cstring(path)?;
        let extra = ExtraFiles::new(files)?;
        // SAFETY: as in `save`.
        check(unsafe {
            ffi::yolots_module_save_for_mobile(
                self.ptr,
                p.as_ptr(),
                extra.names.ptrs.as_ptr(),
                extra.data.as_ptr(),
                extra.lens.as_ptr(),
                extra.names.len(),
            )
        })
    }

    /// `torch.jit.freeze`, keeping `preserved` methods besides `forward`.
    pub(crate) fn freeze(&self, preserved: &[&str]) -> Result<ScriptModule> {
        let names = CStrings::new(preserved)?;
        // SAFETY: valid module and C strings.
        Self::from_raw(unsafe {
            ffi::yolots_module_freeze(self.ptr, names.ptrs.as_ptr(), names.len())
        })
    }

    /// The serialisable passes of `torch.jit.optimize_for_inference` on a frozen
    /// module, in place, for `forward` and `methods`.
    pub(crate) fn optimize_frozen(&mut self, methods: &[&str]) -> Result<()> {
        let names = CStrings::new(methods)?;
        // SAFETY: valid module and C strings.
        check(unsafe {
            ffi::yolots_module_optimize_frozen(self.ptr, names.ptrs.as_ptr(), names.len())
        })
    }

    /// `optimize_for_mobile`, keeping `methods` besides `forward`.
    pub(crate) fn optimize_for_mobile(&self, methods: &[&str]) -> Result<ScriptModule> {
        let names = CStrings::new(methods)?;
        // SAFETY: valid module and C strings.
        Self::from_raw(unsafe {
            ffi::yolots_module_optimize_for_mobile(self.ptr, names.ptrs.as_ptr(), names.len())
        })
    }

    /// The graphs of every method, for debug logs.
    pub(crate) fn graphs(&self) -> Result<String> {
        // SAFETY: valid module; returns an owned string or null.
        unsafe { ffi::take_string(ffi::yolots_module_graphs(self.ptr)) }
            .ok_or_else(|| ConvertError::Torch(ffi::last_error()))
    }

    /// Traces `f` over `inputs` into a new method `name` returning `List[Tensor]`.
    ///
    /// Tensors registered on this module (or its submodules) that `f` uses become
    /// attribute reads in the graph, so the traced method keeps real parameters.
    pub(crate) fn trace<F>(&mut self, name: &str, inputs: &[Tensor], mut f: F) -> Result<()>
    where
        F: FnMut(&[Tensor]) -> Result<Vec<Tensor>>,
    {
        struct Ctx<'a> {
            f: &'a mut dyn FnMut(&[Tensor]) -> Result<Vec<Tensor>>,
            error: Option<ConvertError>,
        }

        unsafe extern "C" fn trampoline(
            ctx: *mut c_void,
            inputs: *const *const C_tensor,
            n: c_int,
            outputs: *mut ffi::TensorSink,
        ) -> c_int {
            // SAFETY: `ctx` is the `Ctx` below, alive for the whole `yolots_module_trace` call.
            let ctx = unsafe { &mut *ctx.cast::<Ctx>() };
            let n = usize::try_from(n).unwrap_or(0);
            // SAFETY: the shim passes `n` valid tensor pointers; cloning shares the tensor.
            let tensors: Vec<Tensor> = (0..n)
                .map(|i| unsafe { Tensor::clone_from_ptr((*inputs.add(i)).cast_mut()) })
                .collect();
            let result = catch_unwind(AssertUnwindSafe(|| (ctx.f)(&tensors)));
            let outcome = match result {
                Ok(Ok(outs)) => {
                    for t in &outs {
                        // SAFETY: valid sink and tensor; the sink copies the handle.
                        unsafe { ffi::yolots_sink_push(outputs, t.as_ptr()) };
                    }
                    return 0;
                }
                Ok(Err(e)) => e,
                Err(_) => ConvertError::Internal("panic inside the traced network".into()),
            };
            let message = CString::new(outcome.to_string().replace('\0', " ")).unwrap_or_default();
            // SAFETY: valid C string; the shim copies it.
            unsafe { ffi::yolots_set_error(message.as_ptr()) };
            ctx.error = Some(outcome);
            -1
        }

        let name_c = cstring(name)?;
        let ptrs: Vec<*const C_tensor> = inputs.iter().map(|t| t.as_ptr()).collect();
        let n = c_int::try_from(ptrs.len()).map_err(|_| ConvertError::Internal("inputs".into()))?;
        let mut ctx = Ctx {
            f: &mut f,
            error: None,
        };
        // SAFETY: valid module, C string and tensors; `ctx` outlives the call.
        let status = unsafe {
            ffi::yolots_module_trace(
                self.ptr,
                name_c.as_ptr(),
                ptrs.as_ptr(),
                n,
                trampoline,
                (&raw mut ctx).cast(),
            )
        };
        if status == 0 {
            return Ok(());
        }
        Err(ctx
            .error
            .take()
            .unwrap_or_else(|| ConvertError::Torch(ffi::last_error())))
    }
}

/// An argument of a method call on a mobile module.
pub(crate) enum MobileArg<'a> {
    Tensor(&'a Tensor),
    Float(f64),
    Int(i64),
}

/// A module loaded by the lite interpreter (`torch::jit::_load_for_mobile`).
pub struct MobileModule(*mut ffi::Mobile);

impl Drop for MobileModule {
    fn drop(&mut self) {
        // SAFETY: owned pointer from `yolots_mobile_load`, freed once.
        unsafe { ffi::yolots_mobile_free(self.0) }
    }
}

impl MobileModule {
    /// Loads a `.ptl` file the way an Android or iOS app does.
    pub fn load(path: &Path) -> Result<Self> {
        let p = path_cstring(path)?;
        // SAFETY: valid C string; returns an owned pointer or null.
        let ptr = unsafe { ffi::yolots_mobile_load(p.as_ptr()) };
        if ptr.is_null() {
            return Err(ConvertError::Torch(ffi::last_error()));
        }
        Ok(MobileModule(ptr))
    }

    /// Runs `forward` on one input; returns every tensor of the result, in order.
    pub fn forward(&mut self, input: &Tensor) -> Result<Vec<Tensor>> {
        self.run("forward", &[MobileArg::Tensor(input)])
    }

    /// Runs `method` and returns every tensor of its result, in order (a list of
    /// tensors comes back flattened).
    pub(crate) fn run(&mut self, method: &str, args: &[MobileArg<'_>]) -> Result<Vec<Tensor>> {
        let method = cstring(method)?;
        let args: Vec<ffi::Arg> = args
            .iter()
            .map(|a| match a {
                MobileArg::Tensor(t) => ffi::Arg {
                    kind: 0,
                    tensor: t.as_ptr(),
                    f: 0.0,
                    i: 0,
                },
                MobileArg::Float(f) => ffi::Arg {
                    kind: 1,
                    tensor: std::ptr::null(),
                    f: *f,
                    i: 0,
                },
                MobileArg::Int(i) => ffi::Arg {
                    kind: 2,
                    tensor: std::ptr::null(),
                    f: 0.0,
                    i: *i,
                },
            })
            .collect();
        let nargs =
            c_int::try_from(args.len()).map_err(|_| ConvertError::Internal("args".into()))?;
        let mut out: *mut *mut C_tensor = std::ptr::null_mut();
        let mut nout: c_int = 0;
        // SAFETY: valid module, C string and `nargs` arguments; on success `out` holds
        // `nout` owned tensor pointers in a malloc'ed array.
        check(unsafe {
            ffi::yolots_mobile_run(
                self.0,
                method.as_ptr(),
                args.as_ptr(),
                nargs,
                &mut out,
                &mut nout,
            )
        })?;
        let n = usize::try_from(nout).unwrap_or(0);
        // SAFETY: each pointer is a `new at::Tensor` that tch takes ownership of.
        let tensors = (0..n)
            .map(|i| unsafe { Tensor::from_ptr(*out.add(i)) })
            .collect();
        // SAFETY: the array itself came from malloc in the shim.
        unsafe { ffi::yolots_free_tensor_array(out) };
        Ok(tensors)
    }
}
