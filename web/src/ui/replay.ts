// A session's transcript played back in the drawer: asciinema-player (its
// own terminal emulator, compiled to WebAssembly) on the asciicast v2 text
// the transcript subresource serves.

import * as AsciinemaPlayer from "asciinema-player";
import "asciinema-player/dist/bundle/asciinema-player.css";

import { ApiError, transcript } from "../api/kube.ts";
import { h } from "./dom.ts";

export class ReplayView {
  readonly panel: HTMLElement;
  private readonly status: HTMLElement;
  private readonly box: HTMLElement;
  private readonly abort = new AbortController();
  private player: AsciinemaPlayer.Player | null = null;

  constructor(
    readonly namespace: string,
    readonly name: string,
  ) {
    this.status = h("p", { class: "status", role: "status" }, "loading the transcript…");
    this.box = h("div", { class: "player" });
    this.panel = h("div", { class: "replay" }, this.status, this.box);
  }

  /** start reads what was recorded so far and shows it, paused at the start; again, it reads it anew. */
  async start(): Promise<void> {
    this.player?.dispose();
    this.player = null;
    this.box.replaceChildren();
    this.status.setAttribute("role", "status");
    this.status.textContent = "loading the transcript…";
    let cast: string;
    try {
      cast = await transcript(this.namespace, this.name, this.abort.signal);
    } catch (e) {
      if (this.abort.signal.aborted) return;
      this.status.textContent = explain(e);
      this.status.setAttribute("role", "alert");
      return;
    }
    const [header, first] = cast.split("\n", 2);
    if (!first) {
      this.status.textContent = `Nothing of ${this.name} is recorded yet.`;
      return;
    }
    let when = "";
    try {
      const ts = JSON.parse(header).timestamp;
      if (typeof ts === "number") when = `, started ${new Date(ts * 1000).toLocaleString()}`;
    } catch {
      // a header the player will refuse too, and say so
    }
    this.status.textContent = `Transcript of ${this.name}${when}: output only, with its timing. Space plays and pauses; arrows seek.`;
    // Pauses longer than 2 s play as 2 s, as asciinema's --idle-time-limit.
    this.player = AsciinemaPlayer.create({ data: cast }, this.box, { fit: "both", idleTimeLimit: 2, controls: true, preload: true });
  }

  dispose(): void {
    this.abort.abort();
    this.player?.dispose();
    this.player = null;
  }
}

function explain(e: unknown): string {
  if (!(e instanceof ApiError)) return `Could not read the transcript: ${e}`;
  switch (e.code) {
    case 403:
      return `You may not read this transcript: ${e.message}`;
    case 404:
      return `No transcript: ${e.message}`;
    default:
      return `Could not read the transcript: ${e.message}`;
  }
}
