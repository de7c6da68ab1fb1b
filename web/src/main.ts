// The console's page: header (context, namespace, preferences), topology,
// sessions, and the drawer with the terminals.

import "@xterm/xterm/css/xterm.css";
import "./style.css";

import { ApiError, get, post, SESSIONS, sessionsPath, setToken, TOKEN_HEADER, watchList, type Pod, type TerminalSession, type Workload } from "./api/kube.ts";
import { h } from "./ui/dom.ts";
import { Drawer } from "./ui/drawer.ts";
import { loadAutoClose, saveAutoClose } from "./ui/prefs.ts";
import { Sessions } from "./ui/sessions.ts";
import { setMeasuring } from "./ui/terminal.ts";
import { Topology } from "./ui/topology.ts";

interface Settings {
  namespace?: string;
  context?: string;
}

const TOKEN_KEY = "terminal-console.token";

async function main(): Promise<void> {
  // The token comes in the printed URL's fragment; it is kept for this tab
  // (sessionStorage: this origin, port included, only) and taken out of the
  // address bar.
  const hash = new URLSearchParams(location.hash.slice(1));
  const fromURL = hash.get("token");
  if (fromURL) {
    sessionStorage.setItem(TOKEN_KEY, fromURL);
    hash.delete("token");
    history.replaceState(null, "", location.pathname + location.search + (hash.size ? `#${hash}` : ""));
  }
  setMeasuring(hash.has("measure"));
  const token = sessionStorage.getItem(TOKEN_KEY) ?? "";
  setToken(token);
  // kubectl terminal ui says which namespace and context; behind
  // `kubectl proxy --www` there is no config.json: "default".
  const config = await fetch("config.json", { credentials: "same-origin", headers: token ? { [TOKEN_HEADER]: token } : {} }).catch(() => null);
  if (config?.status === 401) {
    document.body.replaceChildren(h("main", { class: "locked" }, h("h1", {}, "Terminal console"), h("p", { role: "alert" }, "This console needs its token: open the URL that `kubectl terminal ui` printed (this tab has not seen it).")));
    return;
  }
  const settings: Settings = config?.ok ? await config.json() : {};
  let namespace = hash.get("namespace") || settings.namespace || "default";
  let me = "";
  let autoClose = loadAutoClose();

  const apiStatus = h("p", { class: "api-status", role: "alert" });
  const nsInput = h("input", { id: "namespace", list: "namespaces", value: namespace, autocomplete: "off", spellcheck: "false" });
  const nsList = h("datalist", { id: "namespaces" });
  const auto = h("input", { type: "checkbox", id: "auto-close", checked: autoClose.enabled });
  auto.addEventListener("change", () => {
    autoClose = { ...autoClose, enabled: auto.checked };
    saveAutoClose(autoClose);
  });
  const header = h(
    "header",
    {},
    h("h1", {}, "Terminal console"),
    settings.context ? h("span", { class: "context", title: "kubeconfig context" }, settings.context) : null,
    h("form", { class: "namespace", onsubmit: (e: Event) => (e.preventDefault(), setNamespace(nsInput.value.trim())) }, h("label", { for: "namespace" }, "Namespace"), nsInput, nsList, h("button", { type: "submit" }, "Show")),
    h("label", { class: "pref", title: `idle timeout ${autoClose.idleTimeout}, detach grace period ${autoClose.detachGracePeriod}` }, auto, " Auto-close terminal sessions"),
  );

  const drawer = new Drawer(
    () => namespace,
    () => autoClose,
  );
  const sessions = new Sessions(
    () => me,
    () => drawer.openNames(),
    (s, mode) => drawer.open(s, mode),
    (s) => drawer.replay(s),
  );
  drawer.changed = () => sessions.render();
  const topology = new Topology((sel) => drawer.show(sel));
  document.body.replaceChildren(header, apiStatus, h("main", {}, topology.el, sessions.el), drawer.el);

  // Who the API says the user is: own sessions are theirs to reattach.
  post<{ status: { userInfo: { username: string } } }>("/apis/authentication.k8s.io/v1/selfsubjectreviews", {
    apiVersion: "authentication.k8s.io/v1",
    kind: "SelfSubjectReview",
  }).then(
    (r) => {
      me = r.status.userInfo.username;
      sessions.render();
    },
    () => {},
  );
  get(SESSIONS).then(
    () => (apiStatus.textContent = ""),
    (e: ApiError) =>
      (apiStatus.textContent =
        e.code === 404 ? "This cluster does not serve TerminalSessions (terminal.meshery.io/v1alpha1): install terminal-apiserver." : e.message),
  );
  // The namespaces the user may list, to pick from; one who may not types one.
  const nsAbort = new AbortController();
  watchList<{ metadata: { name: string } }>(
    "/api/v1/namespaces",
    nsAbort.signal,
    (items) => nsList.replaceChildren(...[...items.keys()].sort().map((n) => h("option", { value: n }))),
    () => {},
  );

  let watches = new AbortController();
  const setNamespace = (ns: string) => {
    if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(ns)) {
      apiStatus.textContent = `"${ns}" is not a namespace name.`;
      return;
    }
    apiStatus.textContent = "";
    namespace = ns;
    history.replaceState(null, "", `#namespace=${ns}`);
    watches.abort();
    watches = new AbortController();
    const sig = watches.signal;
    topology.setPods(new Map());
    watchList<Pod>(`/api/v1/namespaces/${ns}/pods`, sig, (m) => topology.setPods(m), (e) => topology.setError(e));
    for (const [kind, res] of [
      ["Deployment", "deployments"],
      ["StatefulSet", "statefulsets"],
      ["DaemonSet", "daemonsets"],
    ] as const) {
      topology.setWorkloads(kind, new Map());
      watchList<Workload>(`/apis/apps/v1/namespaces/${ns}/${res}`, sig, (m) => topology.setWorkloads(kind, m), () => {});
    }
    watchList<TerminalSession>(
      sessionsPath(ns),
      sig,
      (m) => {
        sessions.set(m);
        drawer.sessionsChanged(m);
      },
      (e) => sessions.setError(e),
    );
  };
  setNamespace(namespace);
}

void main();
