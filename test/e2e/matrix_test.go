package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/transport/spdy"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal/v1alpha1"
	clientset "github.com/meshery/terminal-apiserver/pkg/generated/clientset/versioned"
	"github.com/meshery/terminal-apiserver/pkg/wire"
	"github.com/meshery/terminal-apiserver/test/framework"
)

// What one cell of the matrix expects.
const (
	wantTyped   = "typed"   // connected, and the input ran in the shell
	wantWatch   = "watch"   // connected; input, if any, reached nothing
	wantRefused = "refused" // the attach failed
)

// matrixCell is one attempt by one user over one protocol.
type matrixCell struct {
	user, proto, attempt string
	want, got            string
	marker               string // typed by the cell; its output must appear only for wantTyped
	ran                  bool   // the marker's output is in a session's output
}

// ok says whether the cell came out as wanted.
func (c *matrixCell) ok() bool {
	if c.want == wantTyped {
		return c.got == wantWatch && c.ran
	}
	return c.got == c.want && !c.ran
}

// The attacker's matrix: users (owner, joiner, observer, a stranger who
// RBAC lets reach attach, a user with the view role, an owner whose
// pods/exec was revoked) × protocols (SPDY v4 and v2, WebSocket v5, v4 and
// v4.base64) × attempts (stdin in the query; a stdin stream or channel
// without it; a resize; an attach to a session being deleted). Every cell
// asserts allow or deny, and every cell that sends input asserts, from the
// session's whole output, whether it ran. The table is printed (-v) and
// written to the logs.
func TestAttachMatrix(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	ns, owned, _ := sharedSession(t, "matrix")
	execRoleName, sessionRoleName := execRole(t), sessionRole(t)
	as := func(name string) *rest.Config {
		cfg := restConfig(t, "admin")
		cfg.Impersonate = rest.ImpersonationConfig{UserName: name, Groups: []string{"e2e-matrix"}}
		return cfg
	}
	bind(t, ns, "joiner", "terminal-sessions-join")
	bind(t, ns, "joiner", execRoleName)
	bind(t, ns, "observer", "terminal-sessions-observe")
	bind(t, ns, "stranger", strangerRole(t))
	bind(t, ns, "viewing", "view")
	bind(t, ns, "revoked", sessionRoleName)
	revoke := bind(t, ns, "revoked", execRoleName)

	// The revoked owner's own session, and a session being deleted.
	revokedSessions := terminalClientFor(t, as("revoked")).TerminalV1alpha1().TerminalSessions(ns)
	var revokedOwn *v1alpha1.TerminalSession
	eventually(t, 30*time.Second, "the soon-revoked user opens a session (once RBAC caught up)", func(ctx context.Context) (bool, error) {
		var err error
		revokedOwn, err = revokedSessions.Create(ctx, framework.NewSession(ns, uniqueName("revoked"), owned.Spec.Target.Pod), metav1.CreateOptions{})
		return err == nil, nil
	})
	waitPhase(t, ns, revokedOwn.Name, v1alpha1.TerminalSessionRunning)
	deleting := framework.NewSession(ns, uniqueName("deleting"), owned.Spec.Target.Pod)
	deleting.Finalizers = []string{"e2e.terminal.meshery.io/hold"}
	aliceSessions := terminalClient(t, "alice").TerminalV1alpha1().TerminalSessions(ns)
	if _, err := aliceSessions.Create(ctx, deleting, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		patch := []byte(`[{"op":"remove","path":"/metadata/finalizers"}]`)
		_, _ = aliceSessions.Patch(context.Background(), deleting.Name, types.JSONPatchType, patch, metav1.PatchOptions{})
	})
	if err := aliceSessions.Delete(ctx, deleting.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	revoke()
	waitRefused(t, "the revoked user refused", "cannot create pods/exec", func(ctx context.Context) error {
		return spdyAttempt(ctx, as("revoked"), ns, revokedOwn.Name, "v4.channel.k8s.io", url.Values{"stdout": {"true"}}, nil, nil)
	})

	_, js := natsConn(t)
	screens := map[string]*framework.FrameScreen{
		owned.Name:      watchScreen(t, js, wire.Subjects(owned.Status.Subjects)),
		revokedOwn.Name: watchScreen(t, js, wire.Subjects(revokedOwn.Status.Subjects)),
	}
	users := map[string]*rest.Config{"owner": restConfig(t, "alice"), "joiner": as("joiner"), "observer": as("observer"),
		"stranger": as("stranger"), "view role": as("viewing"), "revoked owner": as("revoked")}
	protocols := []string{"spdy v4.channel.k8s.io", "spdy v2.channel.k8s.io", "ws v5.channel.k8s.io", "ws v4.channel.k8s.io", "ws v4.base64.channel.k8s.io"}
	attempts := []string{"stdin by query", "stdin without query", "resize", "deleting session"}
	var cells []*matrixCell
	for user := range users {
		for _, proto := range protocols {
			for _, attempt := range attempts {
				cells = append(cells, &matrixCell{user: user, proto: proto, attempt: attempt, want: expected(user, proto, attempt), marker: marker()})
			}
		}
	}
	sem := make(chan struct{}, 10)
	var wg sync.WaitGroup
	for _, c := range cells {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			target := owned.Name
			switch {
			case c.attempt == "deleting session":
				target = deleting.Name
			case c.user == "revoked owner":
				target = revokedOwn.Name
			}
			c.got = runCell(ctx, users[c.user], ns, target, c)
		})
	}
	wg.Wait()

	// Everything the cells typed is in the session's input ahead of this.
	sh := &shell{nc: mustNATS(t), subj: wire.Subjects(owned.Status.Subjects), scr: screens[owned.Name]}
	size := strings.TrimSpace(sh.run(t, "stty size", 30*time.Second))
	if size == "11 33" {
		t.Errorf("an observer's resize (33x11) reached the terminal")
	}
	sort.Slice(cells, func(i, j int) bool {
		a, b := cells[i], cells[j]
		return a.user+a.proto+a.attempt < b.user+b.proto+b.attempt
	})
	for _, c := range cells {
		for _, scr := range screens {
			c.ran = c.ran || strings.Contains(scr.String(), "mx-"+c.marker+"-42")
		}
		if !c.ok() {
			t.Errorf("%s, %s, %s: %s (input ran: %v), want %s", c.user, c.proto, c.attempt, c.got, c.ran, c.want)
		}
	}
	printMatrix(t, cells, protocols, attempts)
}

// expected is what the matrix wants of one cell.
func expected(user, proto, attempt string) string {
	writer := user == "owner" || user == "joiner"
	switch {
	case attempt == "deleting session", user == "stranger", user == "view role", user == "revoked owner":
		return wantRefused
	case attempt == "stdin by query" && writer:
		return wantTyped
	case attempt == "stdin by query":
		return wantRefused
	case attempt == "stdin without query" && strings.HasPrefix(proto, "spdy"):
		return wantRefused // a stream the query did not ask for is refused, whoever opens it
	}
	return wantWatch
}

// runCell makes one attempt and says what came of it: refused, or
// connected (watch); input typed through a connection shows in the output.
func runCell(ctx context.Context, cfg *rest.Config, ns, name string, c *matrixCell) string {
	kind, proto, _ := strings.Cut(c.proto, " ")
	q := url.Values{"stdout": {"true"}, "tty": {"true"}}
	line := "echo mx-" + c.marker + "-$((6*7))\n"
	var input []byte
	var size *remotecommand.TerminalSize
	switch c.attempt {
	case "stdin by query":
		q.Set("stdin", "true")
		input = []byte(line)
	case "stdin without query":
		input = []byte(line)
	case "resize":
		size = &remotecommand.TerminalSize{Width: 100, Height: 40}
		if c.user != "owner" && c.user != "joiner" {
			size = &remotecommand.TerminalSize{Width: 33, Height: 11}
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 4*time.Second)
	defer cancel()
	var err error
	if kind == "spdy" {
		err = spdyAttempt(ctx, cfg, ns, name, proto, q, input, size)
	} else {
		err = wsAttempt(ctx, cfg, ns, name, proto, q, input, size)
	}
	if err == nil || errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
		return wantWatch
	}
	return wantRefused
}

// spdyAttempt attaches with client-go's SPDY executor speaking proto; with
// input and no stdin in the query it opens a stdin stream all the same
// (Tty off, as a client without a terminal would).
func spdyAttempt(ctx context.Context, cfg *rest.Config, ns, name, proto string, q url.Values, input []byte, size *remotecommand.TerminalSize) error {
	u := attachPath(cfg, ns, name, q)
	u.Scheme = "https"
	tr, up, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		return err
	}
	exec, err := remotecommand.NewSPDYExecutorForProtocols(tr, up, "POST", u, proto)
	if err != nil {
		return err
	}
	opts := remotecommand.StreamOptions{Stdout: io.Discard, Tty: q.Get("stdin") == "true" || size != nil}
	if input != nil {
		opts.Stdin = &holdOpen{ctx: ctx, data: input}
	}
	if size != nil {
		sizes := make(chan remotecommand.TerminalSize, 1)
		sizes <- *size
		opts.TerminalSizeQueue = sizeQueue{ctx: ctx, sizes: sizes}
	}
	return exec.StreamWithContext(ctx, opts)
}

// wsAttempt attaches over a raw WebSocket speaking proto, writes input on
// the stdin channel and size on the resize channel, and reads until ctx ends.
func wsAttempt(ctx context.Context, cfg *rest.Config, ns, name, proto string, q url.Values, input []byte, size *remotecommand.TerminalSize) error {
	tlsConfig, err := rest.TLSConfigFor(cfg)
	if err != nil {
		return err
	}
	h := http.Header{}
	if imp := cfg.Impersonate; imp.UserName != "" {
		h.Set("Impersonate-User", imp.UserName)
		for _, g := range imp.Groups {
			h.Add("Impersonate-Group", g)
		}
	}
	u := attachPath(cfg, ns, name, q)
	u.Scheme = "wss"
	ws, _, err := (&websocket.Dialer{TLSClientConfig: tlsConfig, Subprotocols: []string{proto}}).DialContext(ctx, u.String(), h)
	if err != nil {
		return err
	}
	defer ws.Close()
	frame := func(channel byte, p []byte) error {
		if proto == "v4.base64.channel.k8s.io" {
			return ws.WriteMessage(websocket.TextMessage, append([]byte{'0' + channel}, base64.StdEncoding.EncodeToString(p)...))
		}
		return ws.WriteMessage(websocket.BinaryMessage, append([]byte{channel}, p...))
	}
	if size != nil {
		doc, _ := json.Marshal(size)
		if err := frame(4, doc); err != nil {
			return err
		}
	}
	if input != nil {
		if err := frame(0, input); err != nil {
			return err
		}
	}
	stop := context.AfterFunc(ctx, func() { ws.Close() })
	defer stop()
	for {
		if _, _, err := ws.ReadMessage(); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
	}
}

func attachPath(cfg *rest.Config, ns, name string, q url.Values) *url.URL {
	u, _ := url.Parse(cfg.Host)
	u.Path = "/apis/terminal.meshery.io/v1alpha1/namespaces/" + ns + "/terminalsessions/" + name + "/attach"
	u.RawQuery = q.Encode()
	return u
}

// holdOpen is stdin that sends data, then stays open until ctx ends (an
// input that ended would end an attach without a terminal at once).
type holdOpen struct {
	ctx  context.Context
	data []byte
}

func (h *holdOpen) Read(p []byte) (int, error) {
	if len(h.data) > 0 {
		n := copy(p, h.data)
		h.data = h.data[n:]
		return n, nil
	}
	<-h.ctx.Done()
	return 0, io.EOF
}

type sizeQueue struct {
	ctx   context.Context
	sizes chan remotecommand.TerminalSize
}

func (q sizeQueue) Next() *remotecommand.TerminalSize {
	select {
	case s := <-q.sizes:
		return &s
	case <-q.ctx.Done():
		return nil
	}
}

// strangerRole lets a user reach a session's attach subresource through
// RBAC (get terminalsessions, create/get terminalsessions/attach) and
// nothing more: no ownership, no join, no observe.
func strangerRole(t *testing.T) string {
	return clusterRole(t, "e2e-sessions-stranger",
		rbacv1.PolicyRule{APIGroups: []string{"terminal.meshery.io"}, Resources: []string{"terminalsessions"}, Verbs: []string{"get", "list"}},
		rbacv1.PolicyRule{APIGroups: []string{"terminal.meshery.io"}, Resources: []string{"terminalsessions/attach"}, Verbs: []string{"create", "get"}})
}

func terminalClientFor(t *testing.T, cfg *rest.Config) *clientset.Clientset {
	t.Helper()
	c, err := clientset.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustNATS(t *testing.T) *nats.Conn {
	nc, _ := natsConn(t)
	return nc
}

// printMatrix logs the matrix as a table (users down, protocol/attempt
// across) and writes it beside the component logs.
func printMatrix(t *testing.T, cells []*matrixCell, protocols, attempts []string) {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprint(w, "user \\ protocol, attempt")
	for _, p := range protocols {
		for _, a := range attempts {
			fmt.Fprintf(w, "\t%s, %s", strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(p, "spdy "), "ws "), ".channel.k8s.io")+
				map[bool]string{true: " (spdy)", false: " (ws)"}[strings.HasPrefix(p, "spdy")], a)
		}
	}
	fmt.Fprintln(w)
	byUser := map[string]map[string]*matrixCell{}
	var users []string
	for _, c := range cells {
		if byUser[c.user] == nil {
			byUser[c.user] = map[string]*matrixCell{}
			users = append(users, c.user)
		}
		byUser[c.user][c.proto+"|"+c.attempt] = c
	}
	sort.Strings(users)
	for _, u := range users {
		fmt.Fprint(w, u)
		for _, p := range protocols {
			for _, a := range attempts {
				c := byUser[u][p+"|"+a]
				mark := "ok"
				if !c.ok() {
					mark = "FAIL"
				}
				fmt.Fprintf(w, "\t%s %s", c.want, mark)
			}
		}
		fmt.Fprintln(w)
	}
	_ = w.Flush()
	t.Logf("attach matrix:\n%s", b.String())
	_ = os.WriteFile(filepath.Join(env.localDir, "logs", "attach-matrix.txt"), []byte(b.String()), 0o644)
}
