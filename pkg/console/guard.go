package console

import (
	"crypto/subtle"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// guard admits a request only from the console itself (package doc).
type guard struct {
	hosts   []string // Host values accepted: the loopback names with the port
	origins []string // Origin values accepted: http:// and each host
	token   string
	cookie  string
	next    http.Handler
}

// cookiePrefix names the token's cookie; the port is added, as cookies are
// shared by every port of a host and two consoles may run at once.
const cookiePrefix = "kubectl-terminal-ui-"

func newGuard(port int, token string, next http.Handler) *guard {
	g := &guard{token: token, cookie: cookiePrefix + strconv.Itoa(port), next: next}
	for _, h := range []string{"127.0.0.1", "localhost", "[::1]"} {
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
	if msg := g.checkOrigin(r); msg != "" {
		refuse(w, http.StatusForbidden, msg)
		return
	}
	// The printed URL carries the token once; it becomes a cookie that
	// only this origin's requests carry (SameSite=Strict), and the page
	// reloads without it so it stays out of history and Referer.
	if t := r.URL.Query().Get("token"); t != "" && r.URL.Path == "/" && r.Method == http.MethodGet {
		if !g.valid(t) {
			refuse(w, http.StatusUnauthorized, "the token in this URL is not this console's: open the URL `kubectl terminal ui` printed")
			return
		}
		http.SetCookie(w, &http.Cookie{Name: g.cookie, Value: g.token, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	c, err := r.Cookie(g.cookie)
	if err != nil || !g.valid(c.Value) {
		refuse(w, http.StatusUnauthorized, "this console needs its token: open the URL `kubectl terminal ui` printed")
		return
	}
	// Names need no escapes: an escaped path (an encoded slash) is
	// refused rather than matched against routes in one form and
	// forwarded in another.
	if r.URL.RawPath != "" {
		refuse(w, http.StatusBadRequest, fmt.Sprintf("escaped path %q is refused", r.URL.RawPath))
		return
	}
	if strings.HasPrefix(r.URL.Path, "/api/") || strings.HasPrefix(r.URL.Path, "/apis/") || r.URL.Path == "/api" || r.URL.Path == "/apis" {
		if !allowed(r.Method, r.URL.Path, isUpgrade(r)) {
			refuse(w, http.StatusForbidden, fmt.Sprintf("%s %s is not a request the console makes, so this proxy does not forward it", r.Method, r.URL.Path))
			return
		}
	}
	g.next.ServeHTTP(w, r)
}

func (g *guard) valid(t string) bool {
	return subtle.ConstantTimeCompare([]byte(t), []byte(g.token)) == 1
}

// checkOrigin: a browser names the page behind every WebSocket, and behind
// every request but a same-origin GET or HEAD; those that carry one must
// come from the console, and an upgrade or a write that carries none did
// not come from a browser page of the console (the cookie alone would let
// a plain program through, which the token already covers, but a browser
// always sends Origin there). Sec-Fetch-Site is the browser's own verdict.
func (g *guard) checkOrigin(r *http.Request) string {
	origin := r.Header.Get("Origin")
	if origin != "" && !slices.Contains(g.origins, origin) {
		return fmt.Sprintf("requests from %q are refused: only the console's own pages may use this proxy", origin)
	}
	if origin == "" && (isUpgrade(r) || (r.Method != http.MethodGet && r.Method != http.MethodHead)) {
		return fmt.Sprintf("%s without an Origin is refused: only the console's own pages may use this proxy", r.Method)
	}
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return fmt.Sprintf("a %s request is refused: only the console's own pages may use this proxy", site)
	}
	return ""
}

func isUpgrade(r *http.Request) bool {
	return r.Header.Get("Upgrade") != ""
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
