// llama4-ts/kernel: what a notebook running the llama4-ts kernel (tslab) imports for rich output,
// in-place progress and interrupts. Importing it installs the SIGINT hook that cancels registered
// models (the llama4-ts kernel installs it at start-up already).
export { display, updateDisplay, DisplayHandle, inKernel, isJsonMimeType, normalizeBundle, escapeHtml } from "./display";
export type { MimeBundle, DisplayOptions } from "./display";
export { ProgressBar, downloadProgress, formatBytes, formatDuration, textBar, Throttle } from "./progress";
export type { ProgressBarOptions, DownloadProgressOptions } from "./progress";
export { DisplayStreamer, GenerationProgress } from "./streamer";
export { show, showHTML, showImage } from "./show";
export type { DisplayStreamerOptions, GenerationProgressOptions } from "./streamer";
export {
  registerCancellable,
  unregisterCancellable,
  registeredCancellables,
  cancelAll,
  cancelOnInterrupt,
  installInterruptHandler,
  interruptCount,
} from "./interrupt";
export type { Cancellable } from "./interrupt";

import { installInterruptHandler } from "./interrupt";
installInterruptHandler();
