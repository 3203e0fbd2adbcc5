//! The executor behind the async exports, driven from JavaScript.
//!
//! wasm32 aborts on a panic: the instance traps (`unreachable`). Had the exports been
//! `async fn`s, their futures would be polled by wasm-bindgen-futures from a `queueMicrotask`
//! callback, where that trap goes uncaught (ending a Node process) and the call's Promise never
//! settles. Here every poll is a call that wembed's JS layer makes itself, inside a `try`: a
//! trap comes back to it as an exception, it rejects the call with code `INTERNAL` and starts a
//! fresh instance (see `www/src/runtime.js`).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use wasm_bindgen::prelude::*;

type TaskFuture = Pin<Box<dyn Future<Output = Result<JsValue, JsValue>>>>;

thread_local! {
    /// Task id -> the JS function that schedules its next poll.
    static WAKE: RefCell<HashMap<u32, js_sys::Function>> = RefCell::new(HashMap::new());
    static NEXT_ID: Cell<u32> = const { Cell::new(0) };
}

/// Wakes task `0` by asking JavaScript to poll it again. Holds only the id (a waker must be
/// `Send + Sync`; the JS function stays in this thread's table).
struct TaskWaker(u32);

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        let f = WAKE.with(|m| m.try_borrow().ok().and_then(|m| m.get(&self.0).cloned()));
        if let Some(f) = f {
            // It only schedules (it never polls from inside a poll); a throw there is JS's.
            let _ = f.call0(&JsValue::NULL);
        }
    }
}

/// One async call in flight: `poll()` it whenever its `wake` function asks.
#[wasm_bindgen]
pub struct WasmTask {
    id: u32,
    future: Option<TaskFuture>,
    waker: Waker,
    output: Option<JsValue>,
}

impl WasmTask {
    /// A task running `future`; `wake()` is called (from inside or outside a poll) whenever it
    /// should be polled again, and must only schedule that poll.
    pub(crate) fn new(
        future: impl Future<Output = Result<JsValue, JsValue>> + 'static,
        wake: js_sys::Function,
    ) -> Self {
        let id = NEXT_ID.with(|n| {
            let id = n.get();
            n.set(id.wrapping_add(1));
            id
        });
        WAKE.with(|m| m.borrow_mut().insert(id, wake));
        WasmTask { id, future: Some(Box::pin(future)), waker: Waker::from(Arc::new(TaskWaker(id))), output: None }
    }
}

#[wasm_bindgen]
impl WasmTask {
    /// Runs the task until it waits. True once it has finished (its value is then in
    /// `result()`); throws the task's error.
    pub fn poll(&mut self) -> Result<bool, JsValue> {
        let Some(future) = self.future.as_mut() else { return Ok(true) };
        match future.as_mut().poll(&mut Context::from_waker(&self.waker)) {
            Poll::Pending => Ok(false),
            Poll::Ready(r) => {
                self.future = None;
                WAKE.with(|m| m.borrow_mut().remove(&self.id));
                self.output = Some(r?);
                Ok(true)
            }
        }
    }

    /// The finished task's value (once; `undefined` after).
    pub fn result(&mut self) -> JsValue {
        self.output.take().unwrap_or(JsValue::UNDEFINED)
    }
}

impl Drop for WasmTask {
    fn drop(&mut self) {
        WAKE.with(|m| {
            if let Ok(mut m) = m.try_borrow_mut() {
                m.remove(&self.id);
            }
        });
    }
}

thread_local! {
    static PANIC_REPORTER: RefCell<Option<js_sys::Function>> = const { RefCell::new(None) };
    static TEST_PANIC: Cell<bool> = const { Cell::new(false) };
}

/// Installs the panic hook: `report(message)` is called with the panic's message before the
/// instance traps, so the JS layer can say what went wrong.
#[wasm_bindgen(js_name = setPanicReporter)]
pub fn set_panic_reporter(report: js_sys::Function) {
    PANIC_REPORTER.with(|r| *r.borrow_mut() = Some(report));
    std::panic::set_hook(Box::new(|info| {
        let message = info.to_string();
        PANIC_REPORTER.with(|r| {
            if let Ok(r) = r.try_borrow()
                && let Some(f) = r.as_ref()
            {
                let _ = f.call1(&JsValue::NULL, &JsValue::from_str(&message));
            }
        });
    }));
}

/// Test hook: the next `embed` panics after its first batch, inside the async path, as a bug
/// there would. Only the test suite calls it (it proves that a panic rejects the call with
/// `INTERNAL` and that the next load works).
#[wasm_bindgen(js_name = __testPanicNextEmbed)]
pub fn test_panic_next_embed() {
    TEST_PANIC.with(|p| p.set(true));
}

/// Panics if [`test_panic_next_embed`] asked for it.
pub(crate) fn maybe_test_panic() {
    if TEST_PANIC.with(|p| p.replace(false)) {
        panic!("test panic requested by __testPanicNextEmbed");
    }
}

/// Asks for a fresh instance after a trap: wasm-bindgen builds it at the next call into the
/// module, and objects of the old one become stale (their methods throw). Touches no state of
/// the trapped instance.
#[wasm_bindgen(js_name = reinitAfterCrash)]
pub fn reinit_after_crash() {
    wasm_bindgen::handler::schedule_reinit();
}
