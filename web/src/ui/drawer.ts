// The bottom drawer: Details and Terminal tabs for what the topology selected,
// and one tab per open terminal (pod/container). An ARIA tabs widget: Left
// and Right move between tabs (and show them), Home and End jump.

import { ApiError, defaultContainer, del, podContainers, sessionPath, type Pod, type TerminalSession } from "../api/kube.ts";
import { h } from "./dom.ts";
import type { AutoClose } from "./prefs.ts";
import { ReplayView } from "./replay.ts";
import { mark, type Mode, TerminalView } from "./terminal.ts";
import { podStatus, type Selection } from "./topology.ts";

interface Tab {
  id: string;
  tab: HTMLButtonElement;
  panel: HTMLElement;
  view?: TerminalView;
  replay?: ReplayView;
  broadcast?: HTMLInputElement;
}

let seq = 0;

export class Drawer {
  readonly el: HTMLElement;
  private readonly tablist: HTMLElement;
  private readonly panels: HTMLElement;
  private readonly banner: HTMLElement;
  private readonly broadcastBtn: HTMLButtonElement;
  private tabs: Tab[] = [];
  private details: Tab;
  private connect: Tab;
  private selection: Selection | null = null;
  private broadcasting = false;
  /** changed is called when the set of open terminals or their sessions change (the Sessions list shows them). */
  changed: () => void = () => {};

  constructor(
    private readonly namespace: () => string,
    private readonly autoClose: () => AutoClose,
  ) {
    this.tablist = h("div", { role: "tablist", "aria-label": "Drawer", class: "tabs" });
    this.tablist.addEventListener("keydown", (e) => this.key(e));
    this.panels = h("div", { class: "panels" });
    this.banner = h("div", { class: "broadcast-banner", role: "status", hidden: true });
    this.broadcastBtn = h("button", { type: "button", class: "broadcast-toggle", "aria-pressed": "false", onclick: () => this.setBroadcast(!this.broadcasting) }, "Broadcast input");
    this.el = h("section", { class: "drawer", "aria-label": "Drawer", hidden: true }, h("div", { class: "drawer-bar" }, this.tablist, this.broadcastBtn), this.banner, this.panels);
    this.details = this.addTab("Details", h("div", { class: "details" }));
    this.connect = this.addTab("Terminal", h("div", { class: "connect" }));
  }

  /** show opens the drawer on what the topology selected. */
  show(s: Selection): void {
    this.selection = s;
    this.el.hidden = false;
    this.renderDetails();
    this.renderConnect();
    this.activate(this.connect, false);
  }

  /** open attaches a terminal to an existing session (reattach, join, observe). */
  open(s: TerminalSession, mode: Mode): void {
    const existing = this.tabs.find((t) => t.view?.name === s.metadata.name && t.view.spec.mode === mode && t.view.state.kind !== "closed");
    if (existing) {
      this.activate(existing, true);
      return;
    }
    this.el.hidden = false;
    this.startTerminal({ namespace: s.metadata.namespace ?? this.namespace(), pod: s.spec.target.pod, container: s.spec.target.container ?? "", mode, session: s, autoClose: this.autoClose() });
  }

  /** replay opens a session's transcript in a tab of its own (or shows the one open). */
  replay(s: TerminalSession): void {
    const ns = s.metadata.namespace ?? this.namespace();
    const existing = this.tabs.find((t) => t.replay?.name === s.metadata.name && t.replay.namespace === ns);
    this.el.hidden = false;
    if (existing) {
      // Asked again: what was recorded since comes too.
      this.activate(existing, false);
      void existing.replay?.start();
      return;
    }
    const view = new ReplayView(ns, s.metadata.name);
    const closeBtn = h("button", { type: "button", class: "close" }, "Close");
    const t = this.addTab(`Replay ${s.metadata.name}`, h("div", { class: "replay-tab" }, h("div", { class: "terminal-bar" }, closeBtn), view.panel));
    t.replay = view;
    closeBtn.addEventListener("click", () => {
      view.dispose();
      this.removeTab(t);
    });
    this.activate(t, false);
    void view.start();
  }

  /** openNames are the sessions open in a tab, so the Sessions list can say so. */
  openNames(): Set<string> {
    return new Set(this.tabs.flatMap((t) => (t.view && t.view.state.kind !== "closed" ? [t.view.name] : [])));
  }

  /** sessionsChanged passes viewer counts to the open terminals. */
  sessionsChanged(items: Map<string, TerminalSession>): void {
    for (const t of this.tabs) {
      const s = t.view && items.get(t.view.name);
      if (s && t.view) t.view.setViewers(s.status?.viewers ?? 0);
    }
  }

  private addTab(label: string, content: HTMLElement, before?: HTMLElement): Tab {
    const id = `t${++seq}`;
    const tab = h("button", { type: "button", role: "tab", id: `tab-${id}`, "aria-controls": `panel-${id}`, "aria-selected": "false", tabindex: "-1" }, label);
    const panel = h("div", { role: "tabpanel", id: `panel-${id}`, "aria-labelledby": `tab-${id}`, hidden: true, tabindex: "-1" }, content);
    const t: Tab = { id, tab, panel };
    tab.addEventListener("click", () => this.activate(t, false));
    this.tablist.insertBefore(tab, before ?? null);
    this.panels.append(panel);
    this.tabs.push(t);
    return t;
  }

  private active(): Tab | undefined {
    return this.tabs.find((t) => t.tab.getAttribute("aria-selected") === "true");
  }

  private activate(t: Tab, focusContent: boolean): void {
    for (const o of this.tabs) {
      const on = o === t;
      o.tab.setAttribute("aria-selected", String(on));
      o.tab.tabIndex = on ? 0 : -1;
      o.panel.hidden = !on;
    }
    t.view?.fitNow();
    if (focusContent && t.view) t.view.focus();
  }

  private key(e: KeyboardEvent): void {
    const i = this.tabs.findIndex((t) => t.tab === document.activeElement);
    if (i < 0) return;
    let j: number;
    switch (e.key) {
      case "ArrowRight":
        j = (i + 1) % this.tabs.length;
        break;
      case "ArrowLeft":
        j = (i - 1 + this.tabs.length) % this.tabs.length;
        break;
      case "Home":
        j = 0;
        break;
      case "End":
        j = this.tabs.length - 1;
        break;
      default:
        return;
    }
    e.preventDefault();
    this.activate(this.tabs[j], false);
    this.tabs[j].tab.focus();
  }

  private renderDetails(): void {
    const s = this.selection;
    const box = this.details.panel.firstElementChild as HTMLElement;
    if (!s) return;
    const rows: [string, string][] =
      s.kind === "Pod"
        ? [
            ["Pod", s.pod.metadata.name],
            ["Status", podStatus(s.pod)],
            ["Node", s.pod.spec.nodeName ?? ""],
            ["IP", s.pod.status.podIP ?? ""],
            ["Containers", podContainers(s.pod).map((c) => `${c.name}${c.sidecar ? " (sidecar)" : ""}: ${c.state}`).join(", ")],
          ]
        : [
            [s.workload.kind, s.workload.metadata.name],
            ["Pods", s.pods.map((p) => `${p.metadata.name} (${podStatus(p)})`).join(", ") || "none"],
          ];
    box.replaceChildren(h("dl", {}, ...rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])));
  }

  private renderConnect(): void {
    const s = this.selection;
    const box = this.connect.panel.firstElementChild as HTMLElement;
    if (!s) return;
    const pods = s.kind === "Pod" ? [s.pod] : s.pods;
    const message = h("p", { class: "message", role: "alert" });
    if (!pods.length) {
      box.replaceChildren(h("p", { class: "message" }, `${s.kind === "Workload" ? s.workload.metadata.name : ""} has no pods to open a terminal in.`));
      return;
    }
    const podSel = h("select", { id: "connect-pod" }, ...pods.map((p) => h("option", { value: p.metadata.name }, `${p.metadata.name} (${podStatus(p)})`)));
    const ctrSel = h("select", { id: "connect-container" });
    const pod = () => pods.find((p) => p.metadata.name === podSel.value) ?? pods[0];
    const fillContainers = () => {
      const p = pod();
      const def = defaultContainer(p);
      ctrSel.replaceChildren(...podContainers(p).map((c) => h("option", { value: c.name, selected: c.name === def }, `${c.name}${c.sidecar ? " (sidecar)" : ""}${c.running ? "" : ` — ${c.state}`}`)));
    };
    podSel.addEventListener("change", fillContainers);
    fillContainers();
    const connect = h(
      "button",
      {
        type: "button",
        class: "primary",
        onclick: () => {
          const p = pod();
          const c = podContainers(p).find((x) => x.name === ctrSel.value);
          if (p.status.phase !== "Running") {
            message.textContent = `Pod ${p.metadata.name} is not running (${podStatus(p)}): a terminal needs a running container.`;
            return;
          }
          if (!c?.running) {
            message.textContent = `Container ${ctrSel.value} of ${p.metadata.name} is not running (${c?.state ?? "unknown"}).`;
            return;
          }
          message.textContent = "";
          mark("terminal-connect");
          this.startTerminal({ namespace: p.metadata.namespace ?? this.namespace(), pod: p.metadata.name, container: c.name, mode: "own", autoClose: this.autoClose() });
        },
      },
      "Connect",
    );
    box.replaceChildren(
      h("div", { class: "form" }, h("label", { for: "connect-pod" }, "Pod"), podSel, h("label", { for: "connect-container" }, "Container"), ctrSel, connect),
      message,
    );
  }

  private startTerminal(spec: ConstructorParameters<typeof TerminalView>[0]): void {
    const view = new TerminalView(spec);
    let label = `${spec.pod}/${spec.container}${spec.mode === "observe" ? " (observing)" : ""}`;
    const same = this.tabs.filter((t) => t.view && t.tab.textContent?.startsWith(label)).length;
    if (same) label += ` (${same + 1})`;
    const broadcast = h("input", { type: "checkbox", class: "broadcast-member", "aria-label": `Broadcast to ${label}`, checked: spec.mode !== "observe", disabled: spec.mode === "observe" });
    const closeBtn = h("button", { type: "button", class: "close" }, spec.mode === "own" ? "Close" : "Detach");
    const content = h("div", { class: "terminal-tab" }, h("div", { class: "terminal-bar" }, h("label", { class: "broadcast-label" }, broadcast, " receive broadcast input"), closeBtn), view.panel);
    const t = this.addTab(label, content);
    t.view = view;
    t.broadcast = broadcast;
    t.tab.classList.add("terminal-tab-button");
    broadcast.addEventListener("change", () => this.renderBroadcast());
    view.input = (d) => this.input(t, d);
    // A session's watch event can come before its creation's answer: the
    // list learns the terminal's session name when its state first changes.
    view.onState = () => {
      this.renderBroadcast();
      this.changed();
    };
    closeBtn.addEventListener("click", () => void this.closeTerminal(t));
    this.activate(t, false);
    this.renderBroadcast();
    void view.start().then(() => view.focus());
  }

  private async closeTerminal(t: Tab): Promise<void> {
    const v = t.view;
    if (!v) return;
    // Close ends an own session (as kubectl terminal does on exit);
    // Detach leaves someone else's running.
    if (v.spec.mode === "own" && v.name && v.state.kind !== "closed") {
      try {
        await del(sessionPath(v.spec.namespace, v.name));
      } catch (e) {
        if (!(e instanceof ApiError && e.code === 404)) {
          v.notice(`could not close ${v.name}: ${e instanceof Error ? e.message : e}`);
          return;
        }
      }
    }
    v.dispose();
    this.removeTab(t);
    this.renderBroadcast();
    this.changed();
  }

  /** removeTab takes a closed tab away and shows its neighbour. */
  private removeTab(t: Tab): void {
    const i = this.tabs.indexOf(t);
    this.tabs.splice(i, 1);
    t.tab.remove();
    t.panel.remove();
    const next = this.tabs[Math.min(i, this.tabs.length - 1)];
    this.activate(next, false);
    next.tab.focus();
  }

  private members(): Tab[] {
    return this.tabs.filter((t) => t.view && t.broadcast?.checked && t.view.spec.mode !== "observe" && t.view.state.kind !== "closed");
  }

  /** input sends what was typed in t: to every member while broadcasting from a member, else to t. */
  private input(t: Tab, data: string): void {
    const members = this.members();
    if (this.broadcasting && members.includes(t)) {
      for (const m of members) m.view?.send(data);
      return;
    }
    t.view?.send(data);
  }

  private setBroadcast(on: boolean): void {
    this.broadcasting = on;
    this.broadcastBtn.setAttribute("aria-pressed", String(on));
    this.renderBroadcast();
  }

  private renderBroadcast(): void {
    const members = this.members();
    this.el.classList.toggle("broadcasting", this.broadcasting);
    this.banner.hidden = !this.broadcasting;
    this.banner.textContent = this.broadcasting ? `Broadcast is on: what you type in a marked terminal goes to all ${members.length} marked terminals.` : "";
    for (const t of this.tabs) t.tab.classList.toggle("broadcast-member", this.broadcasting && members.includes(t));
  }
}
