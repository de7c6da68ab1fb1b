package console

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"k8s.io/client-go/rest"
)

// backend stands in for kube-apiserver: it records what reached it.
type backend struct {
	srv    *httptest.Server
	seen   []*http.Request
	bodies []string
}

func newBackend(t *testing.T) *backend {
	b := &backend{}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.seen = append(b.seen, r)
		body, _ := io.ReadAll(r.Body)
		b.bodies = append(b.bodies, string(body))
		w.Header().Set("Content-Type", "application/json")
		// What a load balancer in front of the API might add.
		w.Header().Set("Set-Cookie", "lb=sticky; Path=/")
		_, _ = io.WriteString(w, `{"kind":"Status"}`)
	}))
	t.Cleanup(b.srv.Close)
	return b
}

const port = 8123

func console(t *testing.T, b *backend) http.Handler {
	t.Helper()
	h, err := Handler(Options{Config: &rest.Config{Host: b.srv.URL, BearerToken: "users-token"}, Port: port, Token: "secret",
		Settings: Settings{Namespace: "team-a"}})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

type req struct {
	method, path, host, origin, token, site string
	upgrade                                 bool
	header                                  map[string]string
}

func (r req) do(h http.Handler) *httptest.ResponseRecorder {
	if r.method == "" {
		r.method = http.MethodGet
	}
	var body io.Reader
	if r.method == http.MethodPost {
		body = strings.NewReader(`{"kind":"TerminalSession"}`)
	}
	hr := httptest.NewRequest(r.method, "http://x"+r.path, body)
	hr.Host = "127.0.0.1:" + strconv.Itoa(port)
	if r.host != "" {
		hr.Host = r.host
	}
	if r.origin != "" {
		hr.Header.Set("Origin", r.origin)
	}
	t := r.token
	if t == "" {
		t = "secret"
	}
	if r.upgrade {
		hr.Header.Set("Sec-WebSocket-Protocol", "v5.channel.k8s.io, v4.base64.channel.k8s.io")
		if t != "-" {
			hr.Header.Add("Sec-WebSocket-Protocol", TokenProtocol+t)
		}
	} else if t != "-" {
		hr.Header.Set(TokenHeader, t)
	}
	if r.site != "" {
		hr.Header.Set("Sec-Fetch-Site", r.site)
	}
	if r.upgrade {
		hr.Header.Set("Connection", "Upgrade")
		hr.Header.Set("Upgrade", "websocket")
	}
	for k, v := range r.header {
		hr.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, hr)
	return w
}

const self = "http://127.0.0.1:8123"

func TestGuardRefuses(t *testing.T) {
	b := newBackend(t)
	h := console(t, b)
	pods := "/api/v1/namespaces/team-a/pods"
	for name, c := range map[string]struct {
		r    req
		code int
		msg  string
	}{
		"no token":                    {req{path: pods, token: "-"}, 401, "needs its token"},
		"wrong token":                 {req{path: pods, token: "guess"}, 401, "needs its token"},
		"config without token":        {req{path: "/config.json", token: "-"}, 401, "needs its token"},
		"WebSocket without token":     {req{path: "/apis/terminal.meshery.io/v1alpha1/namespaces/team-a/terminalsessions/s/attach", origin: self, upgrade: true, token: "-"}, 401, "needs its token"},
		"WebSocket with wrong token":  {req{path: "/apis/terminal.meshery.io/v1alpha1/namespaces/team-a/terminalsessions/s/attach", origin: self, upgrade: true, token: "guess"}, 401, "needs its token"},
		"a cookie is no token":        {req{path: pods, token: "-", header: map[string]string{"Cookie": "kubectl-terminal-ui-8123=secret"}}, 401, "needs its token"},
		"navigating to the API":       {req{path: pods, header: map[string]string{"Sec-Fetch-Mode": "navigate"}}, 403, "not pages"},
		"Connection: Upgrade alone":   {req{path: pods, origin: self, header: map[string]string{"Connection": "Upgrade"}}, 403, "not a request the console makes"},
		"SPDY attach":                 {req{method: "POST", path: "/apis/terminal.meshery.io/v1alpha1/namespaces/team-a/terminalsessions/s/attach", origin: self, header: map[string]string{"Connection": "Upgrade", "Upgrade": "SPDY/3.1"}}, 403, "not a request"},
		"DNS rebinding":               {req{path: pods, host: "evil.example:8123"}, 403, `host "evil.example:8123"`},
		"DNS rebinding, the page":     {req{path: "/", host: "evil.example:8123", token: "-"}, 403, `host "evil.example:8123"`},
		"another port":                {req{path: pods, host: "127.0.0.1:9999"}, 403, "is not this console's"},
		"foreign Origin":              {req{path: pods, origin: "https://evil.example"}, 403, `"https://evil.example"`},
		"foreign Origin on WebSocket": {req{path: "/apis/terminal.meshery.io/v1alpha1/namespaces/team-a/terminalsessions/s/attach", origin: "http://localhost:8001", upgrade: true}, 403, "only the console's own pages"},
		"WebSocket without Origin":    {req{path: "/apis/terminal.meshery.io/v1alpha1/namespaces/team-a/terminalsessions/s/attach", upgrade: true}, 403, "without an Origin"},
		"POST without Origin":         {req{method: "POST", path: "/apis/terminal.meshery.io/v1alpha1/namespaces/team-a/terminalsessions"}, 403, "without an Origin"},
		"cross-site fetch":            {req{path: pods, site: "cross-site"}, 403, "cross-site"},
		"secrets":                     {req{path: "/api/v1/namespaces/team-a/secrets", origin: self}, 403, "not a request the console makes"},
		"pod exec":                    {req{path: "/api/v1/namespaces/team-a/pods/p/exec", origin: self, upgrade: true}, 403, "not a request the console makes"},
		"delete a pod":                {req{method: "DELETE", path: "/api/v1/namespaces/team-a/pods/p", origin: self}, 403, "not a request the console makes"},
		"attach without upgrade":      {req{path: "/apis/terminal.meshery.io/v1alpha1/namespaces/team-a/terminalsessions/s/attach", origin: self}, 403, "not a request"},
		"transcript as an upgrade":    {req{path: "/apis/terminal.meshery.io/v1alpha1/namespaces/team-a/terminalsessions/s/transcript", origin: self, upgrade: true}, 403, "not a request"},
		"transcript written to":       {req{method: "POST", path: "/apis/terminal.meshery.io/v1alpha1/namespaces/team-a/terminalsessions/s/transcript", origin: self}, 403, "not a request"},
		"escaped slash":               {req{path: "/api/v1/namespaces/team-a/pods/a%2F..%2F..%2Fsecrets", origin: self}, 400, "escaped path"},
		"dot segments":                {req{path: "/api/v1/namespaces/team-a/pods/../../secrets", origin: self}, 403, "not a request"},
		"update a session":            {req{method: "PUT", path: "/apis/terminal.meshery.io/v1alpha1/namespaces/team-a/terminalsessions/s", origin: self}, 403, "not a request"},
	} {
		t.Run(name, func(t *testing.T) {
			w := c.r.do(h)
			if w.Code != c.code || !strings.Contains(w.Body.String(), c.msg) {
				t.Errorf("%s %s: got %d %q, want %d with %q", c.r.method, c.r.path, w.Code, w.Body.String(), c.code, c.msg)
			}
		})
	}
	if len(b.seen) != 0 {
		t.Errorf("refused requests reached the API server: %d", len(b.seen))
	}
}

// The page holds no secret: it loads without the token (which it reads from
// the URL's fragment) and sets no cookie.
func TestGuardServesThePage(t *testing.T) {
	h := console(t, newBackend(t))
	w := req{path: "/?run=abc", token: "-", site: "cross-site"}.do(h)
	if w.Code != 200 || !strings.Contains(w.Body.String(), `integrity="sha384-`) {
		t.Fatalf("index: %d %q", w.Code, w.Body.String())
	}
	for _, hd := range []string{"Content-Security-Policy", "X-Frame-Options", "Cross-Origin-Opener-Policy", "Cross-Origin-Resource-Policy"} {
		if w.Header().Get(hd) == "" {
			t.Errorf("the page has no %s", hd)
		}
	}
	if c := w.Result().Cookies(); len(c) != 0 {
		t.Errorf("the page set cookies: %v", c)
	}
	w = req{path: "/config.json"}.do(h)
	if w.Body.String() != `{"namespace":"team-a"}` {
		t.Errorf("config.json: %q", w.Body.String())
	}
}

// The console's requests reach the API with the user's credentials, and
// without what the browser added.
func TestGuardForwards(t *testing.T) {
	b := newBackend(t)
	h := console(t, b)
	for _, r := range []req{
		{path: "/api/v1/namespaces?watch=1", origin: self},
		{path: "/api/v1/namespaces/team-a/pods", site: "same-origin"},
		{path: "/api/v1/namespaces/team-a/pods/web-1", host: "localhost:8123"},
		{path: "/apis/apps/v1/namespaces/team-a/deployments?watch=1&resourceVersion=5"},
		{method: "POST", path: "/apis/terminal.meshery.io/v1alpha1/namespaces/team-a/terminalsessions", origin: "http://localhost:8123"},
		{method: "DELETE", path: "/apis/terminal.meshery.io/v1alpha1/namespaces/team-a/terminalsessions/web-1-x7k2p", origin: self},
		{path: "/apis/terminal.meshery.io/v1alpha1/namespaces/team-a/terminalsessions/web-1-x7k2p/transcript", origin: self},
		{method: "POST", path: "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", origin: self},
		{method: "POST", path: "/apis/authentication.k8s.io/v1/selfsubjectreviews", origin: self,
			header: map[string]string{"Authorization": "Bearer someone-else", "Impersonate-User": "admin",
				"X-Remote-User": "admin", "X-Forwarded-For": "10.0.0.1", "Cookie": "a=b"}},
	} {
		w := r.do(h)
		if w.Code != 200 {
			t.Errorf("%s %s: %d %q", r.method, r.path, w.Code, w.Body.String())
		}
		if c := w.Header().Get("Set-Cookie"); c != "" {
			t.Errorf("%s %s: the browser got a cookie from the API: %q", r.method, r.path, c)
		}
		if w.Header().Get("Content-Security-Policy") != "sandbox; default-src 'none'" {
			t.Errorf("%s %s: an API response is not sandboxed", r.method, r.path)
		}
	}
	if len(b.seen) != 9 {
		t.Fatalf("%d requests reached the API server, want 9", len(b.seen))
	}
	if b.bodies[4] != `{"kind":"TerminalSession"}` {
		t.Errorf("the session's creation reached the API with the body %q", b.bodies[4])
	}
	for _, r := range b.seen {
		if got := r.Header.Get("Authorization"); got != "Bearer users-token" {
			t.Errorf("%s reached the API with Authorization %q", r.URL.Path, got)
		}
		for _, hd := range []string{"Cookie", "Origin", "Impersonate-User", "X-Remote-User", TokenHeader} {
			if r.Header.Get(hd) != "" {
				t.Errorf("%s reached the API with %s: %q", r.URL.Path, hd, r.Header.Get(hd))
			}
		}
	}
}

// The token is a subprotocol of the attach's WebSocket: the API server sees
// the channel protocols only (no token, and no credentials of the page's).
func TestGuardForwardsOnlyChannelProtocols(t *testing.T) {
	var got []string
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Values("Sec-Websocket-Protocol")
		http.Error(w, "no upgrade here", http.StatusBadRequest)
	}))
	defer api.Close()
	h, err := Handler(Options{Config: &rest.Config{Host: api.URL}, Port: port, Token: "secret"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	r, _ := http.NewRequest(http.MethodGet, srv.URL+"/apis/terminal.meshery.io/v1alpha1/namespaces/team-a/terminalsessions/s/attach", nil)
	r.Host = "127.0.0.1:8123"
	r.Header.Set("Origin", self)
	r.Header.Set("Connection", "Upgrade")
	r.Header.Set("Upgrade", "websocket")
	r.Header.Set("Sec-WebSocket-Version", "13")
	r.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	r.Header.Set("Sec-WebSocket-Protocol", "v5.channel.k8s.io, v4.base64.channel.k8s.io, "+TokenProtocol+"secret")
	r.Header.Add("Sec-WebSocket-Protocol", "base64url.bearer.authorization.k8s.io.c29tZW9uZQ")
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if strings.Join(got, ",") != "v5.channel.k8s.io, v4.base64.channel.k8s.io" {
		t.Errorf("the API server got subprotocols %q", got)
	}
}
