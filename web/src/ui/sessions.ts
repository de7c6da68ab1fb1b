// The namespace's TerminalSessions, live: your own to reattach or close, and
// others' to join or observe where RBAC grants it; transcripts to replay,
// your own or, with the replay verb, anyone's. Buttons appear only when
// a SelfSubjectAccessReview says they would work.

import { ApiError, canI, type TerminalSession } from "../api/kube.ts";
import { age, h } from "./dom.ts";
import type { Mode } from "./terminal.ts";

interface Grants {
  join: boolean;
  observe: boolean;
  /** transcript: RBAC lets the user read the transcript subresource. */
  transcript: boolean;
  /** replay: the verb that lets the user read transcripts of others' sessions. */
  replay: boolean;
}

export class Sessions {
  readonly el: HTMLElement;
  private readonly body: HTMLElement;
  private readonly message: HTMLElement;
  private items = new Map<string, TerminalSession>();
  // Grants by session UID: a session's grants do not change while the
  // page shows it, except by an RBAC change, which a reload picks up.
  private grants = new Map<string, { at: number; grants: Promise<Grants>; none?: boolean }>();

  constructor(
    private readonly me: () => string,
    private readonly openNames: () => Set<string>,
    private readonly open: (s: TerminalSession, mode: Mode) => void,
    private readonly replay: (s: TerminalSession) => void,
  ) {
    this.message = h("p", { class: "message", role: "status" });
    this.body = h("tbody");
    // Ages move on between watch events.
    setInterval(() => {
      if (!this.body.contains(document.activeElement)) this.render();
    }, 10_000);
    this.el = h(
      "section",
      { class: "sessions", "aria-labelledby": "sessions-title" },
      h("h2", { id: "sessions-title" }, "Sessions"),
      this.message,
      h(
        "table",
        {},
        h("thead", {}, h("tr", {}, ...["Name", "Target", "Owner", "Phase", "Viewers", "Age", "Actions"].map((c) => h("th", { scope: "col" }, c)))),
        this.body,
      ),
    );
  }

  set(items: Map<string, TerminalSession>): void {
    this.items = items;
    this.render();
  }

  setError(e: ApiError | null): void {
    this.message.textContent = e ? (e.code === 403 ? `You may not list sessions here: ${e.message}` : e.message) : "";
  }

  render(): void {
    const rows = [...this.items.values()].sort((a, b) => (b.metadata.creationTimestamp ?? "").localeCompare(a.metadata.creationTimestamp ?? ""));
    const open = this.openNames();
    // A live list re-renders under the keyboard: keep the focus on the
    // same button.
    const focused = this.body.contains(document.activeElement) ? document.activeElement?.getAttribute("aria-label") : null;
    this.body.replaceChildren(
      ...rows.map((s) => {
        const actions = h("td", { class: "actions" });
        this.fillActions(actions, s, open.has(s.metadata.name));
        const phase = s.status?.phase ?? "Pending";
        const end = phase === "Closed" || phase === "Failed" ? ` (${s.status?.reason ?? ""}${s.status?.exitCode !== undefined ? `, exit ${s.status.exitCode}` : ""})` : "";
        return h(
          "tr",
          { "data-session": s.metadata.name },
          h("td", {}, s.metadata.name),
          h("td", {}, `${s.spec.target.pod}/${s.spec.target.container ?? ""}`),
          h("td", {}, s.status?.owner?.username ?? ""),
          h("td", {}, phase + end),
          h("td", { class: "viewers" }, String(s.status?.viewers ?? 0)),
          h("td", {}, age(s.metadata.creationTimestamp)),
          actions,
        );
      }),
    );
    if (!rows.length) this.body.append(h("tr", {}, h("td", { colspan: 7, class: "empty" }, "No sessions in this namespace.")));
    this.refocus = focused ?? "";
    this.restoreFocus();
  }

  private refocus = "";

  private restoreFocus(): void {
    if (!this.refocus) return;
    const b = this.body.querySelector<HTMLElement>(`[aria-label="${CSS.escape(this.refocus)}"]`);
    if (b) {
      b.focus();
      this.refocus = "";
    }
  }

  private fillActions(td: HTMLElement, s: TerminalSession, isOpen: boolean): void {
    const phase = s.status?.phase ?? "Pending";
    const ended = phase === "Closed" || phase === "Failed" || !!s.metadata.deletionTimestamp;
    const label = `${s.metadata.name}`;
    const mine = s.status?.owner?.username === this.me();
    if (!ended && mine) {
      if (!isOpen) td.append(h("button", { type: "button", "aria-label": `Reattach ${label}`, onclick: () => this.open(s, "own") }, "Reattach"));
      else td.append(h("span", { class: "muted" }, "open"));
    }
    const uid = s.metadata.uid ?? s.metadata.name;
    let entry = this.grants.get(uid);
    // No way to attach is asked again at the next render after 5 s: a RoleBinding
    // made a moment ago may not have reached the authorizer yet.
    if (!entry || (entry.none && Date.now() - entry.at > 5000)) {
      const e: { at: number; grants: Promise<Grants>; none?: boolean } = { at: Date.now(), grants: grantsFor(s, mine) };
      void e.grants.then((gr) => (e.none = !gr.join && !gr.observe));
      this.grants.set(uid, e);
      entry = e;
    }
    void entry.grants.then((gr) => {
      if (!ended && !mine) {
        if (gr.join) td.append(h("button", { type: "button", "aria-label": `Join ${label}`, onclick: () => this.open(s, "join") }, "Join"));
        if (gr.observe) td.append(h("button", { type: "button", "aria-label": `Observe ${label}`, onclick: () => this.open(s, "observe") }, "Observe"));
        if (!gr.join && !gr.observe) td.append(h("span", { class: "muted" }, "no access"));
      }
      // The owner's own transcript, or anyone's with the replay verb
      // (pkg/registry/terminalsession/transcript.go).
      if (gr.transcript && (mine || gr.replay)) {
        td.append(h("button", { type: "button", "aria-label": `Replay ${label}`, onclick: () => this.replay(s) }, "Replay"));
      }
      this.restoreFocus();
    });
  }
}

/**
 * grantsFor asks what attach would allow (pkg/registry/terminalsession/access.go):
 * join with create pods/exec on the target to type, observe (or what join
 * needs) to watch.
 */
async function grantsFor(s: TerminalSession, mine: boolean): Promise<Grants> {
  const namespace = s.metadata.namespace;
  const session = (verb: string) => canI({ namespace, verb, group: "terminal.meshery.io", resource: "terminalsessions", name: s.metadata.name });
  const transcript = canI({ namespace, verb: "get", group: "terminal.meshery.io", resource: "terminalsessions", subresource: "transcript", name: s.metadata.name });
  // One's own session needs no grant to attach or replay.
  if (mine) return { join: false, observe: false, transcript: await transcript, replay: false };
  const [join, observe, exec, mayRead, replay] = await Promise.all([
    session("join"),
    session("observe"),
    canI({ namespace, verb: "create", resource: "pods", subresource: "exec", name: s.spec.target.pod }),
    transcript,
    session("replay"),
  ]);
  const mayJoin = join && exec;
  return { join: mayJoin, observe: observe || mayJoin, transcript: mayRead, replay };
}
