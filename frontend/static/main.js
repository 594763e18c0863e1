// Starts the page (a file of its own: the Content-Security-Policy allows no inline script).
import init, { start } from "./pkg/yolots_web.js";

await init();
start();
