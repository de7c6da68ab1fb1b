// The topology: the namespace's Deployments, StatefulSets and DaemonSets with
// their Pods, and standalone Pods, kept live by watches. An ARIA tree: one
// item in the tab order at a time (roving tabindex), arrows to move, Right
// and Left to expand and collapse, Enter or Space to select.

import { ApiError, ownerWorkload, type Pod, type Workload } from "../api/kube.ts";
import { h } from "./dom.ts";

export type Selection = { kind: "Pod"; pod: Pod } | { kind: "Workload"; workload: Workload; pods: Pod[] };

interface Node {
  id: string;
  label: string;
  detail: string;
  health: "ok" | "warn" | "bad";
  children?: Node[];
  select: () => Selection;
}

export class Topology {
  readonly el: HTMLElement;
  private readonly tree: HTMLElement;
  private readonly message: HTMLElement;
  private pods = new Map<string, Pod>();
  private workloads = new Map<string, Workload>(); // kind/name
  private collapsed = new Set<string>();
  private focusId = "";
  private selectedId = "";

  constructor(private readonly onSelect: (s: Selection) => void) {
    this.message = h("p", { class: "message", role: "status" });
    this.tree = h("ul", { role: "tree", "aria-label": "Workloads and pods", class: "tree" });
    this.el = h("nav", { class: "topology", "aria-label": "Topology" }, h("h2", {}, "Topology"), this.message, this.tree);
    this.tree.addEventListener("keydown", (e) => this.key(e));
  }

  setPods(p: Map<string, Pod>): void {
    this.pods = p;
    this.render();
  }

  setWorkloads(kind: Workload["kind"], items: Map<string, Workload>): void {
    for (const k of [...this.workloads.keys()]) if (k.startsWith(`${kind}/`)) this.workloads.delete(k);
    for (const [n, w] of items) this.workloads.set(`${kind}/${n}`, { ...w, kind });
    this.render();
  }

  setError(e: ApiError | null): void {
    this.message.textContent = e ? (e.code === 403 ? `You may not list here: ${e.message}` : e.message) : "";
  }

  /** podsOf are the pods of a workload, for its drawer. */
  podsOf(w: Workload): Pod[] {
    return [...this.pods.values()].filter((p) => {
      const o = ownerWorkload(p);
      return o?.kind === w.kind && o.name === w.metadata.name;
    });
  }

  private nodes(): Node[] {
    const owned = new Set<string>();
    const out: Node[] = [];
    const podNode = (p: Pod): Node => ({
      id: `pod/${p.metadata.name}`,
      label: p.metadata.name,
      detail: podStatus(p),
      health: p.status.phase === "Running" && (p.status.containerStatuses ?? []).every((c) => c.ready) ? "ok" : p.status.phase === "Pending" ? "warn" : "bad",
      select: () => ({ kind: "Pod", pod: this.pods.get(p.metadata.name) ?? p }),
    });
    for (const [key, w] of [...this.workloads].sort(([a], [b]) => a.localeCompare(b))) {
      const pods = this.podsOf(w).sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
      for (const p of pods) owned.add(p.metadata.name);
      const ready = w.kind === "DaemonSet" ? `${w.status?.numberReady ?? 0}/${w.status?.desiredNumberScheduled ?? 0}` : `${w.status?.readyReplicas ?? 0}/${w.status?.replicas ?? 0}`;
      const [r, all] = ready.split("/");
      out.push({
        id: key,
        label: `${w.kind} ${w.metadata.name}`,
        detail: `${ready} ready`,
        health: r === all ? "ok" : "warn",
        children: pods.map(podNode),
        select: () => ({ kind: "Workload", workload: w, pods: this.podsOf(w) }),
      });
    }
    const standalone = [...this.pods.values()].filter((p) => !owned.has(p.metadata.name)).sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
    return [...out, ...standalone.map(podNode)];
  }

  private render(): void {
    const nodes = this.nodes();
    const ids: string[] = [];
    const item = (n: Node, level: number): HTMLElement => {
      ids.push(n.id);
      const expanded = n.children ? !this.collapsed.has(n.id) : undefined;
      const li = h(
        "li",
        {
          role: "treeitem",
          id: `tree-${n.id}`,
          "data-id": n.id,
          "aria-level": level,
          "aria-selected": String(n.id === this.selectedId),
          "aria-expanded": expanded === undefined ? undefined : String(expanded),
          tabindex: "-1",
          onclick: (e: Event) => {
            e.stopPropagation();
            this.focusId = n.id;
            this.choose(n);
          },
        },
        h("span", { class: `row health-${n.health}` }, n.children ? h("span", { class: "twisty", "aria-hidden": "true" }, expanded ? "▾" : "▸") : null, h("span", { class: "label" }, n.label), h("span", { class: "detail" }, n.detail)),
      );
      if (n.children && expanded && n.children.length) li.append(h("ul", { role: "group" }, ...n.children.map((c) => item(c, level + 1))));
      return li;
    };
    const hadFocus = this.tree.contains(document.activeElement);
    this.tree.replaceChildren(...nodes.map((n) => item(n, 1)));
    if (!nodes.length) this.tree.append(h("li", { role: "none", class: "empty" }, "No workloads or pods here."));
    if (!ids.includes(this.focusId)) this.focusId = ids[0] ?? "";
    const f = this.focusEl();
    if (f) {
      f.tabIndex = 0;
      if (hadFocus) f.focus();
    }
    this.byId = new Map(flatten(nodes).map((n) => [n.id, n]));
  }

  private byId = new Map<string, Node>();

  private focusEl(): HTMLElement | null {
    return this.focusId ? (this.tree.querySelector(`[data-id="${CSS.escape(this.focusId)}"]`) as HTMLElement | null) : null;
  }

  private choose(n: Node): void {
    this.selectedId = n.id;
    this.render();
    this.onSelect(n.select());
  }

  private key(e: KeyboardEvent): void {
    const visible = [...this.tree.querySelectorAll<HTMLElement>('[role="treeitem"]')];
    const i = visible.findIndex((el) => el.dataset.id === this.focusId);
    const n = this.byId.get(this.focusId);
    const move = (j: number) => {
      const el = visible[Math.max(0, Math.min(visible.length - 1, j))];
      if (!el) return;
      this.focusEl()?.setAttribute("tabindex", "-1");
      this.focusId = el.dataset.id ?? "";
      el.tabIndex = 0;
      el.focus();
    };
    switch (e.key) {
      case "ArrowDown":
        move(i + 1);
        break;
      case "ArrowUp":
        move(i - 1);
        break;
      case "Home":
        move(0);
        break;
      case "End":
        move(visible.length - 1);
        break;
      case "ArrowRight":
        if (n?.children) {
          if (this.collapsed.has(n.id)) {
            this.collapsed.delete(n.id);
            this.render();
          } else move(i + 1);
        }
        break;
      case "ArrowLeft":
        if (n?.children && !this.collapsed.has(n.id)) {
          this.collapsed.add(n.id);
          this.render();
        } else {
          const parent = visible[i]?.parentElement?.closest<HTMLElement>('[role="treeitem"]');
          if (parent) move(visible.indexOf(parent));
        }
        break;
      case "Enter":
      case " ":
        if (n) this.choose(n);
        break;
      default:
        return;
    }
    e.preventDefault();
  }
}

function flatten(nodes: Node[]): Node[] {
  return nodes.flatMap((n) => [n, ...flatten(n.children ?? [])]);
}

/** podStatus is kubectl get pods' STATUS column, roughly. */
export function podStatus(p: Pod): string {
  if (p.metadata.deletionTimestamp) return "Terminating";
  for (const c of p.status.containerStatuses ?? []) {
    if (c.state?.waiting?.reason) return c.state.waiting.reason;
    if (c.state?.terminated?.reason && p.status.phase !== "Succeeded") return c.state.terminated.reason;
  }
  return p.status.reason ?? p.status.phase ?? "Unknown";
}
