// The console's Kubernetes API calls, relative to the page's origin: the
// `kubectl terminal ui` proxy, or `kubectl proxy --www`. Every path here is
// one pkg/console forwards (paths.go); a new one must be added there too.

export interface ObjectMeta {
  name: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: { kind: string; name: string; controller?: boolean }[];
}

export interface Container {
  name: string;
  image?: string;
  restartPolicy?: string; // "Always" on an init container: a sidecar
}

export interface ContainerStatus {
  name: string;
  ready: boolean;
  restartCount: number;
  state?: { running?: object; waiting?: { reason?: string }; terminated?: { reason?: string; exitCode?: number } };
}

export interface Pod {
  metadata: ObjectMeta;
  spec: { containers: Container[]; initContainers?: Container[]; nodeName?: string };
  status: {
    phase?: string;
    podIP?: string;
    reason?: string;
    containerStatuses?: ContainerStatus[];
    initContainerStatuses?: ContainerStatus[];
  };
}

export interface Workload {
  kind: "Deployment" | "StatefulSet" | "DaemonSet";
  metadata: ObjectMeta;
  status?: { readyReplicas?: number; replicas?: number; numberReady?: number; desiredNumberScheduled?: number };
}

export interface TerminalSession {
  metadata: ObjectMeta;
  spec: {
    target: { pod: string; container?: string };
    command?: string[];
    tty?: boolean;
    size?: { cols?: number; rows?: number };
    idleTimeout?: string;
    detachGracePeriod?: string;
  };
  status?: {
    phase?: string; // Pending, Running, Closed, Failed
    owner?: { username: string };
    exitCode?: number;
    reason?: string;
    message?: string;
    viewers?: number;
  };
}

/** ApiError is a failed request, with the server's Status message when it sent one. */
export class ApiError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

export const SESSIONS = "/apis/terminal.meshery.io/v1alpha1";

// The console's token (docs/console.md): `kubectl terminal ui` requires it
// on every API request, in this header, and on WebSockets as a subprotocol.
// Behind `kubectl proxy --www` there is none.
let token = "";
export const TOKEN_HEADER = "X-Console-Token";
export const TOKEN_PROTOCOL = "base64url.console.terminal.meshery.io.";

export function setToken(t: string): void {
  token = t;
}

/** tokenProtocols are the WebSocket subprotocols that carry the token, if any. */
export function tokenProtocols(): string[] {
  return token ? [TOKEN_PROTOCOL + token] : [];
}

function headers(h: Record<string, string>): Record<string, string> {
  return token ? { ...h, [TOKEN_HEADER]: token } : h;
}

async function send(method: string, path: string, accept: string, body?: unknown, signal?: AbortSignal): Promise<Response> {
  let res: Response;
  try {
    res = await fetch(path, {
      method,
      signal,
      headers: headers(body === undefined ? { Accept: accept } : { Accept: accept, "Content-Type": "application/json" }),
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
    });
  } catch (e) {
    if (signal?.aborted) throw e;
    throw new ApiError(0, "Unreachable", "the Kubernetes API is unreachable: is `kubectl terminal ui` still running?");
  }
  if (!res.ok) throw await errorOf(res);
  return res;
}

async function request<T>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
  return (await (await send(method, path, "application/json", body, signal)).json()) as T;
}

async function errorOf(res: Response): Promise<ApiError> {
  const text = await res.text();
  try {
    const st = JSON.parse(text);
    if (st.kind === "Status" && st.message) return new ApiError(res.status, st.reason ?? "", st.message);
  } catch {
    // not a Status: the console proxy's own refusal, in plain text
  }
  const msg = text.trim() || res.statusText;
  if (res.status === 503 || res.status === 502) {
    return new ApiError(res.status, "ServiceUnavailable", `the API answered ${res.status}: ${msg}`);
  }
  return new ApiError(res.status, "", msg);
}

export const get = <T>(path: string, signal?: AbortSignal) => request<T>("GET", path, undefined, signal);
export const post = <T>(path: string, body: unknown) => request<T>("POST", path, body);
export const del = <T>(path: string) => request<T>("DELETE", path);

export interface List<T> {
  metadata: { resourceVersion: string };
  items: T[];
}

export interface WatchEvent<T> {
  type: "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR";
  object: T;
}

/**
 * watchList keeps items (by name) up to date for a collection: a list, then a
 * watch from its resourceVersion, listing again when the watch ends or its
 * version expired. A list that fails is reported, and everything is retried
 * with a back-off until signal aborts: a 403 or 404 too, if more slowly (a
 * RoleBinding not yet in the API server's cache, access granted later, an
 * API group registered). A user who may list but not watch sees the list,
 * listed again on the back-off.
 */
export function watchList<T extends { metadata: ObjectMeta }>(
  path: string,
  signal: AbortSignal,
  update: (items: Map<string, T>) => void,
  error: (e: ApiError | null) => void,
): void {
  const items = new Map<string, T>();
  let backoff = 500;
  const run = async () => {
    while (!signal.aborted) {
      let listed = false;
      let fault: unknown = null;
      try {
        const list = await get<List<T>>(path, signal);
        listed = true;
        items.clear();
        for (const it of list.items) items.set(it.metadata.name, it);
        update(items);
        error(null);
        const opened = Date.now();
        let events = 0;
        await stream<T>(`${path}?watch=1&allowWatchBookmarks=true&resourceVersion=${list.metadata.resourceVersion}`, signal, (ev) => {
          events++;
          backoff = 500; // the watch works
          if (ev.type === "ADDED" || ev.type === "MODIFIED") items.set(ev.object.metadata.name, ev.object);
          else if (ev.type === "DELETED") items.delete(ev.object.metadata.name);
          else return; // BOOKMARK; ERROR (410 Gone) ends the stream: list again
          update(items);
        });
        // A watch that ended at once, with nothing in it, is not listed
        // again at once: a proxy that closes watches would make a loop.
        if (events > 0 || Date.now() - opened > 5_000) continue;
      } catch (e) {
        if (signal.aborted) return;
        fault = e;
        // The list is shown: a failed watch after it says nothing more
        // (a failing list, next, will).
        if (!listed) error(e instanceof ApiError ? e : new ApiError(0, "Unreachable", String(e)));
      }
      await sleep(backoff, signal);
      const slow = fault instanceof ApiError && (fault.code === 403 || fault.code === 404);
      backoff = Math.min(backoff * 2, slow ? 30_000 : 10_000);
    }
  };
  void run();
}

/** sleep resolves after ms, or at once when signal aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}

async function stream<T>(path: string, signal: AbortSignal, event: (ev: WatchEvent<T>) => void | "stop"): Promise<void> {
  const res = await fetch(path, { signal, headers: headers({ Accept: "application/json" }), credentials: "same-origin" });
  if (!res.ok || !res.body) throw await errorOf(res);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let nl: number;
    while ((nl = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (!line.trim()) continue;
      const ev = JSON.parse(line) as WatchEvent<T>;
      if (ev.type === "ERROR") {
        await reader.cancel();
        return;
      }
      event(ev);
    }
  }
}

/** canI asks the API server whether the user may do verb on resource (SelfSubjectAccessReview). */
export async function canI(attrs: { namespace?: string; verb: string; group?: string; resource: string; subresource?: string; name?: string }): Promise<boolean> {
  try {
    const r = await post<{ status: { allowed: boolean } }>("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", {
      apiVersion: "authorization.k8s.io/v1",
      kind: "SelfSubjectAccessReview",
      spec: { resourceAttributes: attrs },
    });
    return r.status.allowed;
  } catch {
    return false;
  }
}

export const sessionsPath = (ns: string) => `${SESSIONS}/namespaces/${encodeURIComponent(ns)}/terminalsessions`;
export const sessionPath = (ns: string, name: string) => `${sessionsPath(ns)}/${encodeURIComponent(name)}`;

/**
 * transcript reads a session's recording so far: asciicast v2 text
 * (docs/transcripts.md). Its owner may read it; anyone else needs the
 * replay verb on the session.
 */
export async function transcript(ns: string, name: string, signal?: AbortSignal): Promise<string> {
  return (await send("GET", `${sessionPath(ns, name)}/transcript`, "application/x-asciicast", undefined, signal)).text();
}

/** createSession opens a shell in pod/container at the terminal's size. */
export function createSession(
  ns: string,
  pod: string,
  container: string,
  size: { cols: number; rows: number },
  autoClose: { idleTimeout: string; detachGracePeriod: string } | null,
): Promise<TerminalSession> {
  return post<TerminalSession>(sessionsPath(ns), {
    apiVersion: "terminal.meshery.io/v1alpha1",
    kind: "TerminalSession",
    metadata: { generateName: `${pod.slice(0, 50)}-` },
    spec: {
      target: { pod, container },
      tty: true,
      size,
      ...(autoClose ?? {}),
    },
  });
}

/** podContainers are the containers a terminal may open in: regular ones and sidecars (init containers that keep running). */
export function podContainers(p: Pod): { name: string; sidecar: boolean; running: boolean; state: string }[] {
  const statusOf = (n: string, list?: ContainerStatus[]) => list?.find((s) => s.name === n);
  const describe = (s?: ContainerStatus) =>
    s?.state?.running ? "running" : s?.state?.waiting ? (s.state.waiting.reason ?? "waiting") : s?.state?.terminated ? (s.state.terminated.reason ?? "terminated") : "unknown";
  return [
    ...p.spec.containers.map((c) => {
      const s = statusOf(c.name, p.status.containerStatuses);
      return { name: c.name, sidecar: false, running: !!s?.state?.running, state: describe(s) };
    }),
    ...(p.spec.initContainers ?? [])
      .filter((c) => c.restartPolicy === "Always")
      .map((c) => {
        const s = statusOf(c.name, p.status.initContainerStatuses);
        return { name: c.name, sidecar: true, running: !!s?.state?.running, state: describe(s) };
      }),
  ];
}

/** defaultContainer is kubectl's choice: the annotation, else the first container. */
export function defaultContainer(p: Pod): string {
  const a = p.metadata.annotations?.["kubectl.kubernetes.io/default-container"];
  const all = podContainers(p);
  return a && all.some((c) => c.name === a) ? a : (all[0]?.name ?? "");
}

/** ownerWorkload names the Deployment, StatefulSet or DaemonSet a pod belongs to, if any. */
export function ownerWorkload(p: Pod): { kind: string; name: string } | null {
  const ref = p.metadata.ownerReferences?.find((r) => r.controller);
  if (!ref) return null;
  if (ref.kind === "ReplicaSet") {
    // A Deployment's ReplicaSet is named after it and the pod template's hash.
    const hash = p.metadata.labels?.["pod-template-hash"];
    if (hash && ref.name.endsWith(`-${hash}`)) return { kind: "Deployment", name: ref.name.slice(0, -hash.length - 1) };
    return null;
  }
  if (ref.kind === "StatefulSet" || ref.kind === "DaemonSet") return { kind: ref.kind, name: ref.name };
  return null;
}
