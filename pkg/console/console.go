// Package console serves the browser console on loopback: its built assets
// (web/, embedded from dist/) and the Kubernetes API paths the console uses,
// proxied with the user's kubeconfig credentials by kubectl's own proxy.
//
// A local proxy that holds someone's credentials is a target for every web
// page the browser opens and every program on the machine, so every request
// passes a guard first (guard.go): the Host must be the loopback address it
// listens on (DNS rebinding), the per-run token must come with it (in the
// printed URL once, then a cookie), a page's Origin must be the console's
// own (on every request that carries one, and always on WebSocket upgrades
// and writes), and only the API paths and verbs the console uses pass
// (paths.go).
package console

import (
	"crypto/rand"
	"embed"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"strings"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/kubectl/pkg/proxy"
)

//go:embed dist
var dist embed.FS

// Assets are the built console: index.html, app.js, app.css.
func Assets() fs.FS {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		panic(err) // dist is embedded at build time
	}
	return sub
}

// Settings are what the console is told of its kubeconfig (config.json).
type Settings struct {
	// Namespace is the kubeconfig context's namespace, the console's first.
	Namespace string `json:"namespace"`
	// Context names the kubeconfig context, shown in the header.
	Context string `json:"context,omitempty"`
}

// Options configure Handler.
type Options struct {
	// Config reaches the cluster as the user.
	Config *rest.Config
	// Port is the loopback port the console listens on: the Host and
	// Origin it accepts name it.
	Port int
	// Token is the per-run secret (NewToken).
	Token    string
	Settings Settings
}

// NewToken is a per-run token: 256 random bits.
func NewToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24)
	return base64.RawURLEncoding.EncodeToString(b)
}

// keepalive is the TCP keepalive of upgraded (attach) connections to the
// API, as kubectl proxy's default.
const keepalive = 30 * time.Second

// Handler serves the console and its API proxy behind the guard.
func Handler(o Options) (http.Handler, error) {
	if o.Token == "" || o.Port <= 0 {
		return nil, fmt.Errorf("console: a token and the listening port are required")
	}
	api, err := proxy.NewProxyHandler("/api", nil, o.Config, keepalive, false)
	if err != nil {
		return nil, fmt.Errorf("console: proxying the Kubernetes API at %s: %w", o.Config.Host, err)
	}
	settings, err := json.Marshal(o.Settings)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/api/", stripClientHeaders(api))
	mux.Handle("/apis/", stripClientHeaders(api))
	mux.HandleFunc("GET /config.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(settings)
	})
	files := http.FileServerFS(Assets())
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			refuse(w, http.StatusMethodNotAllowed, r.Method+" is not a request the console makes")
			return
		}
		pageHeaders(w.Header(), o.Port)
		files.ServeHTTP(w, r)
	})
	return newGuard(o.Port, o.Token, mux), nil
}

// pageHeaders keep the console's pages to themselves: no framing
// (clickjacking), scripts and connections only from the console's origin.
// xterm.js sets styles inline, hence 'unsafe-inline' for styles only.
func pageHeaders(h http.Header, port int) {
	h.Set("Content-Security-Policy", fmt.Sprintf("default-src 'self'; connect-src 'self' ws://127.0.0.1:%[1]d ws://localhost:%[1]d ws://[::1]:%[1]d; "+
		"style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'", port))
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
}

// stripClientHeaders removes what the browser sends that is not for the
// API server: the console's cookie (the token), and the Origin the guard
// has checked (the server's own --allowed-origins check is for callers
// that come without this proxy's guard). Credentials are the proxy's to
// add: a browser's Authorization or Impersonate-* headers are dropped.
func stripClientHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r = r.Clone(r.Context())
		for k := range r.Header {
			if lk := strings.ToLower(k); lk == "cookie" || lk == "origin" || lk == "referer" || lk == "authorization" ||
				strings.HasPrefix(lk, "impersonate-") {
				delete(r.Header, k)
			}
		}
		next.ServeHTTP(w, r)
	})
}
