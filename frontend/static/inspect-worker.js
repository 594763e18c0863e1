// Inspects a checkpoint off the page's thread, with the page's own wasm bundle: the page
// posts a File, this answers the reader's JSON (see `inspect` in frontend/src/lib.rs).
import init, { inspect } from "./pkg/yolots_web.js";

const ready = init();

self.onmessage = async (event) => {
  try {
    await ready;
    const bytes = new Uint8Array(await event.data.arrayBuffer());
    self.postMessage(inspect(bytes));
  } catch (error) {
    self.postMessage(JSON.stringify({
      error: { code: "browser", message: `the browser could not read the file: ${error}` },
    }));
  }
};
