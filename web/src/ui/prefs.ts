// Preferences kept in the browser (localStorage), never sent anywhere but
// into the sessions the console creates.

const KEY = "terminal-console.autoClose";

/** The "Auto-close terminal sessions" preference: on by default, short timeouts. */
export interface AutoClose {
  enabled: boolean;
  /** Close a session nobody types into for this long (spec.idleTimeout). */
  idleTimeout: string;
  /** Close a session nobody is attached to for this long (spec.detachGracePeriod). */
  detachGracePeriod: string;
}

const defaults: AutoClose = { enabled: true, idleTimeout: "30m", detachGracePeriod: "5m" };

export function loadAutoClose(): AutoClose {
  try {
    const v = JSON.parse(localStorage.getItem(KEY) ?? "null");
    if (v && typeof v.enabled === "boolean") return { ...defaults, ...v };
  } catch {
    // a broken value: the defaults
  }
  return { ...defaults };
}

export function saveAutoClose(a: AutoClose): void {
  localStorage.setItem(KEY, JSON.stringify(a));
}
