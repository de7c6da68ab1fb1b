package console

import (
	"crypto/subtle"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/httpstream"
)

// guard admits a request only from the console itself (package doc).
//
// The token never travels in a cookie: browsers send a cookie of 127.0.0.1
// to every port of it, so any local server a page of which the user opens
// would get it. The printed URL carries it in its fragment (never sent to a
// server, nor in a Referer); the page keeps it in sessionStorage (one
// origin, port included) and sends it with every API request in
// TokenHeader, and with every WebSocket as a subprotocol (browsers cannot
// set a WebSocket's headers), which the guard removes before forwarding.
type guard struct {
	hosts   []string // Host values accepted: the loopback names with the port
	origins []string // Origin values accepted: http:// and each host
	token   string
	next    http.Handler
}

const (
	// TokenHeader carries the console's token on its API requests.
	TokenHeader = "X-Console-Token"
	// TokenProtocol prefixes the token among a WebSocket's subprotocols, as
	// kube-apiserver's base64url.bearer.authorization.k8s.io. does a bearer
	// token (the token is base64url already).
	TokenProtocol = "base64url.console.terminal.meshery.io."
)

func newGuard(port int, token string, next http.Handler) *guard {
	g := &guard{token: token, next: next}
	// It listens on 127.0.0.1 only: [::1] never reaches it.
	for _, h := range []string{"127.0.0.1", "localhost"} {
		host := h + ":" + strconv.Itoa(port)
		g.hosts = append(g.hosts, host)
		g.origins = append(g.origins, "http://"+host)
	}
	return g
}

func (g *guard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// DNS rebinding: a page of evil.example whose name now resolves to
	// 127.0.0.1 sends Host: evil.example.
	if !slices.Contains(g.hosts, r.Host) {
		refuse(w, http.StatusForbidden, fmt.Sprintf("host %q is not this console's: open %s", r.Host, g.origins[0]))
		return
	}
	// The page itself (index.html, app.js, app.css) is the same for
	// everyone and holds no secret: it is what reads the token. Any page
	// may link to it (--open goes through a local file).
	api := isAPI(r.URL.Path)
	if !api && r.URL.Path != "/config.json" {
		g.next.ServeHTTP(w, r)
		return
	}
	if msg := g.checkOrigin(r); msg != "" {
		refuse(w, http.StatusForbidden, msg)
		return
	}
	if !g.hasToken(r) {
		refuse(w, http.StatusUnauthorized, "this console needs its token: open the URL `kubectl terminal ui` printed")
		return
	}
	if api {
		// Names need no escapes: an escaped path (an encoded slash) is
		// refused rather than matched against routes in one form and
		// forwarded in another.
		if r.URL.RawPath != "" {
			refuse(w, http.StatusBadRequest, fmt.Sprintf("escaped path %q is refused", r.URL.RawPath))
			return
		}
		// An API response is data, never a page of the console's origin.
		if r.Header.Get("Sec-Fetch-Mode") == "navigate" {
			refuse(w, http.StatusForbidden, "API responses are not pages: the console reads them")
			return
		}
		if !allowed(r.Method, r.URL.Path, upgradeOf(r)) {
			refuse(w, http.StatusForbidden, fmt.Sprintf("%s %s is not a request the console makes, so this proxy does not forward it", r.Method, r.URL.Path))
			return
		}
	}
	g.next.ServeHTTP(w, r)
}

func isAPI(path string) bool {
	return path == "/api" || path == "/apis" || strings.HasPrefix(path, "/api/") || strings.HasPrefix(path, "/apis/")
}

// hasToken: the header on a request, the subprotocol on a WebSocket.
func (g *guard) hasToken(r *http.Request) bool {
	if t := r.Header.Get(TokenHeader); t != "" {
		return g.valid(t)
	}
	for _, p := range wsProtocols(r) {
		if t, ok := strings.CutPrefix(p, TokenProtocol); ok {
			return g.valid(t)
		}
	}
	return false
}

func (g *guard) valid(t string) bool {
	return subtle.ConstantTimeCompare([]byte(t), []byte(g.token)) == 1
}

// checkOrigin: a browser names the page behind every WebSocket, and behind
// every request but a same-origin GET or HEAD; those that carry one must
// come from the console, and an upgrade or a write that carries none did
// not come from a page of the console. Sec-Fetch-Site is the browser's own
// verdict: same-origin, or none (the user typed or opened the URL).
func (g *guard) checkOrigin(r *http.Request) string {
	origin := r.Header.Get("Origin")
	if origin != "" && !slices.Contains(g.origins, origin) {
		return fmt.Sprintf("requests from %q are refused: only the console's own pages may use this proxy", origin)
	}
	if origin == "" && (upgradeOf(r) != "" || (r.Method != http.MethodGet && r.Method != http.MethodHead)) {
		return fmt.Sprintf("%s without an Origin is refused: only the console's own pages may use this proxy", r.Method)
	}
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return fmt.Sprintf("a %s request is refused: only the console's own pages may use this proxy", site)
	}
	return ""
}

// upgradeOf is the protocol a request asks to upgrade to, "" for none. The
// proxy underneath upgrades on Connection: Upgrade alone, so that counts
// as an upgrade too (to "?", which no route allows).
func upgradeOf(r *http.Request) string {
	if u := r.Header.Get("Upgrade"); u != "" {
		return strings.ToLower(u)
	}
	if httpstream.IsUpgradeRequest(r) {
		return "?"
	}
	return ""
}

// wsProtocols are the subprotocols a WebSocket handshake offers.
func wsProtocols(r *http.Request) []string {
	var out []string
	for _, v := range r.Header.Values("Sec-WebSocket-Protocol") {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

// refuse answers in plain text: the console shows it as it is, and a person
// who opened a wrong URL reads what to do.
func refuse(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = fmt.Fprintln(w, msg)
}
