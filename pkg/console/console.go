// Package console serves the browser console on loopback: its built assets
// (web/, embedded from dist/) and the Kubernetes API paths the console uses,
// proxied with the user's kubeconfig credentials by kubectl's own proxy.
//
// A local proxy that holds someone's credentials is a target for every web
// page the browser opens and every program on the machine, so every request
// passes a guard first (guard.go): the Host must be the loopback address it
// listens on (DNS rebinding); every API request must carry the per-run
// token (the printed URL's fragment, kept by the page; never a cookie); a
// page's Origin must be the console's own (on every request that carries
// one, and always on WebSocket upgrades and writes); and only the API paths
// and verbs the console uses pass (paths.go), with only the headers they
// need.
package console

import (
	"bufio"
	"crypto/rand"
	"embed"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"slices"
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
	mux.Handle("/api/", toAPI(api))
	mux.Handle("/apis/", toAPI(api))
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
// asciinema-player (the Replay tab) runs its terminal emulator as
// WebAssembly compiled from bytes in its script: 'wasm-unsafe-eval' allows
// compiling WebAssembly, not eval or any script from elsewhere.
func pageHeaders(h http.Header, port int) {
	h.Set("Content-Security-Policy", fmt.Sprintf("default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; connect-src 'self' ws://127.0.0.1:%[1]d ws://localhost:%[1]d; "+
		"style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'", port))
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	// Another site's window.open keeps no handle on the console's window,
	// and its pages cannot embed the console's files to learn it runs.
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
}

// forwardedHeaders are the request headers the console's requests need;
// the proxy forwards no other. What a browser adds is not for the API
// server: cookies, Origin (checked by the guard; the server's own
// --allowed-origins check is for callers without this proxy), the
// console's token, and anything a front proxy might trust (X-Remote-*,
// X-Forwarded-*). Credentials are kubeconfig's to add: a browser's
// Authorization or Impersonate-* would even stop client-go from adding
// them.
var forwardedHeaders = []string{"Accept", "Content-Type", "User-Agent", "Connection",
	"Sec-Websocket-Key", "Sec-Websocket-Version"}

// droppedResponseHeaders are what the API, or a proxy or load balancer in
// front of it, may answer that the browser would keep for 127.0.0.1 and so
// for every port of it (a cookie: the very leak the token avoids), or act
// on for the console's origin.
var droppedResponseHeaders = []string{"Set-Cookie", "Set-Cookie2", "Clear-Site-Data", "Access-Control-Allow-Origin",
	"Access-Control-Allow-Credentials", "Refresh", "Link"}

// toAPI forwards only forwardedHeaders, the WebSocket subprotocols without
// the console's token, and marks what comes back as data: never a page
// that could run script as the console.
func toAPI(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r = r.Clone(r.Context())
		h := http.Header{}
		for _, k := range forwardedHeaders {
			if v, ok := r.Header[k]; ok {
				h[k] = v
			}
		}
		// The guard let through only WebSocket upgrades (to the attach),
		// offering the channel protocols: forward exactly that.
		if upgradeOf(r) != "" {
			h.Set("Upgrade", "websocket")
			kept := slices.DeleteFunc(wsProtocols(r), func(p string) bool { return !strings.HasSuffix(p, ".channel.k8s.io") })
			if len(kept) > 0 {
				h.Set("Sec-Websocket-Protocol", strings.Join(kept, ", "))
			}
		}
		r.Header = h
		w.Header().Set("Content-Security-Policy", "sandbox; default-src 'none'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		next.ServeHTTP(&scrubbed{ResponseWriter: w}, r)
	})
}

// scrubbed drops droppedResponseHeaders from an API response. An upgrade's
// 101 comes back as bytes from the API server through the hijacked
// connection and is not scrubbed: kube-apiserver sets no cookie there.
type scrubbed struct {
	http.ResponseWriter
	wrote bool
}

func (s *scrubbed) WriteHeader(code int) {
	if !s.wrote {
		s.wrote = true
		for _, k := range droppedResponseHeaders {
			s.Header().Del(k)
		}
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *scrubbed) Write(p []byte) (int, error) {
	if !s.wrote {
		s.WriteHeader(http.StatusOK)
	}
	return s.ResponseWriter.Write(p)
}

// Unwrap lets the proxy flush watch events and hijack upgrades
// (http.ResponseController).
func (s *scrubbed) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Flush and Hijack for callers that assert the interfaces directly, as
// apimachinery's proxy does.
func (s *scrubbed) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *scrubbed) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h, ok := s.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, fmt.Errorf("console: the connection cannot be taken over")
	}
	return h.Hijack()
}
