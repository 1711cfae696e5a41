// Runs on the audio thread: turns the microphone (already at the context's 16 kHz) into
// 50 ms PCM16 chunks for the enrollment WebSocket, with each chunk's peak for the level meter.
"use strict";
const CHUNK = 800; // 50 ms at 16 kHz: advice can only be as quick as the audio reaches the server

class Pcm16Chunker extends AudioWorkletProcessor {
  constructor() {
    super();
    this.buffer = new Int16Array(CHUNK);
    this.filled = 0;
    this.peak = 0;
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true;
    for (let i = 0; i < channel.length; i++) {
      const x = Math.max(-1, Math.min(1, channel[i]));
      this.peak = Math.max(this.peak, Math.abs(x));
      this.buffer[this.filled++] = x < 0 ? x * 32768 : x * 32767;
      if (this.filled === CHUNK) {
        this.port.postMessage({ pcm: this.buffer.buffer, peak: this.peak }, [this.buffer.buffer]);
        this.buffer = new Int16Array(CHUNK);
        this.filled = 0;
        this.peak = 0;
      }
    }
    return true;
  }
}

registerProcessor("pcm16-chunker", Pcm16Chunker);
