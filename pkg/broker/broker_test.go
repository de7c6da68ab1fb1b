package broker

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// freePort is a TCP port nothing listens on at the moment.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func startNATS(port int, dir string) (*server.Server, error) {
	return serveNATS(&server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir, NoSigs: true, NoLog: true})
}

// serveNATS starts a NATS server and waits until it takes connections.
func serveNATS(o *server.Options) (*server.Server, error) {
	s, err := server.NewServer(o)
	if err != nil {
		return nil, err
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, errors.New("NATS did not start")
	}
	return s, nil
}

// A NATS that comes up after the server does (a fresh install applies both
// at once) is waited for, within StartTimeout.
func TestStartWaitsForNATS(t *testing.T) {
	port, dir := freePort(t), t.TempDir()
	type started struct {
		s   *server.Server
		err error
	}
	later := make(chan started, 1)
	go func() {
		time.Sleep(1500 * time.Millisecond) // NATS starting later than its client: the case under test
		s, err := startNATS(port, dir)
		later <- started{s, err}
	}()
	b, err := Start(context.Background(), Config{URL: "nats://127.0.0.1:" + strconv.Itoa(port), Name: "wait-test", StartTimeout: time.Minute})
	st := <-later
	if st.err != nil {
		t.Fatal(st.err)
	}
	defer st.s.Shutdown()
	if err != nil {
		t.Fatalf("Start did not wait for NATS: %v", err)
	}
	defer b.Close()
	if !b.Conn.IsConnected() {
		t.Error("not connected")
	}
}

// Without a NATS, Start gives up after StartTimeout with an error naming the
// URL, and at once when its context ends.
func TestStartGivesUp(t *testing.T) {
	url := "nats://127.0.0.1:" + strconv.Itoa(freePort(t))
	began := time.Now()
	_, err := Start(context.Background(), Config{URL: url, Name: "give-up-test", StartTimeout: 2 * time.Second})
	if err == nil || !strings.Contains(err.Error(), url) {
		t.Fatalf("Start with nothing at %s: %v, want an error naming it", url, err)
	}
	if took := time.Since(began); took < 2*time.Second || took > 20*time.Second {
		t.Errorf("gave up after %s, want about StartTimeout (2s)", took)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	began = time.Now()
	if _, err := Start(ctx, Config{URL: url, Name: "cancel-test", StartTimeout: time.Hour}); err == nil {
		t.Fatal("Start with a cancelled context succeeded")
	}
	if took := time.Since(began); took > 10*time.Second {
		t.Errorf("a cancelled Start took %s", took)
	}
}

// A password NATS refuses is not waited out: it does not heal.
func TestStartDoesNotWaitOutAWrongPassword(t *testing.T) {
	port := freePort(t)
	s, err := serveNATS(&server.Options{Host: "127.0.0.1", Port: port, NoSigs: true, NoLog: true,
		Username: "terminal-apiserver", Password: "right"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()
	began := time.Now()
	_, err = Start(context.Background(), Config{URL: "nats://127.0.0.1:" + strconv.Itoa(port), User: "terminal-apiserver",
		Password: "wrong", Name: "auth-test", StartTimeout: time.Minute})
	if err == nil {
		t.Fatal("connected with a wrong password")
	}
	if took := time.Since(began); took > 10*time.Second {
		t.Errorf("gave up after %s, want at once: %v", took, err)
	}
}

// A password rotated on disk (a Secret's volume updated) is used from the
// next connection, without a restart: NATS reloaded with the new password
// closes the connection made with the old one and refuses the old
// password, for as long as the file is not updated (here a second, many
// refusals: nats.go would give up after two), and the client connects
// again once it is.
func TestAPasswordRotatedOnDiskIsUsedAtTheNextConnection(t *testing.T) {
	port, dir := freePort(t), t.TempDir()
	opts := func(password string) *server.Options {
		return &server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir, NoSigs: true, NoLog: true,
			Users: []*server.User{{Username: "terminal-apiserver", Password: password}}}
	}
	s, err := serveNATS(opts("old"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()
	file := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(file, []byte("old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := Start(context.Background(), Config{URL: "nats://127.0.0.1:" + strconv.Itoa(port), User: "terminal-apiserver",
		PasswordFile: file, Name: "rotation-test", StartTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	reconnected := make(chan struct{}, 1)
	b.Conn.SetReconnectHandler(func(*nats.Conn) { reconnected <- struct{}{} })

	if err := s.ReloadOptions(opts("new")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // NATS ahead of the file: the case under test
	select {
	case <-reconnected:
		t.Fatal("connected again with the old password")
	default:
	}
	if err := os.WriteFile(file, []byte("new\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	select {
	case <-reconnected:
	case <-time.After(30 * time.Second):
		t.Fatal("the client did not connect again after NATS required the new password")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := b.JetStream.AccountInfo(ctx); err != nil {
		t.Errorf("JetStream after the rotation: %v", err)
	}
}

// connectedAs is the user the server's only client connection
// authenticated as.
func connectedAs(t *testing.T, s *server.Server) string {
	t.Helper()
	connz, err := s.Connz(&server.ConnzOptions{Username: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(connz.Conns) != 1 {
		t.Fatalf("%d client connections, want 1", len(connz.Conns))
	}
	return connz.Conns[0].AuthorizedUser
}

// The documented rotation (docs/operations.md): NATS takes the old and
// the new user, the files change to the new one and the client moves to
// it by itself, NATS forgets the old one and nothing is cut. Credentials
// NATS refuses are never moved to: the connection stays as it is.
func TestCredentialsRotatedOnDiskAreMovedToOnceNATSTakesThem(t *testing.T) {
	credentialsPoll = 50 * time.Millisecond
	defer func() { credentialsPoll = 5 * time.Second }()
	port, dir := freePort(t), t.TempDir()
	opts := func(users ...*server.User) *server.Options {
		return &server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir, NoSigs: true, NoLog: true, Users: users}
	}
	a := &server.User{Username: "terminal-apiserver-a", Password: "old"}
	b2 := &server.User{Username: "terminal-apiserver-b", Password: "new"}
	s, err := serveNATS(opts(a))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()
	files := t.TempDir()
	userFile, passwordFile := filepath.Join(files, "user"), filepath.Join(files, "password")
	write := func(user, password string) {
		t.Helper()
		// As the kubelet does: both at once.
		tmp := t.TempDir()
		if err := os.WriteFile(filepath.Join(tmp, "user"), []byte(user), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(tmp, "password"), []byte(password+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"user", "password"} {
			if err := os.Rename(filepath.Join(tmp, f), filepath.Join(files, f)); err != nil {
				t.Fatal(err)
			}
		}
	}
	write(a.Username, a.Password)
	b, err := Start(context.Background(), Config{URL: "nats://127.0.0.1:" + strconv.Itoa(port),
		UserFile: userFile, PasswordFile: passwordFile, Name: "rotation-test", StartTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	reconnected := make(chan struct{}, 8)
	b.Conn.SetReconnectHandler(func(*nats.Conn) { reconnected <- struct{}{} })
	if u := connectedAs(t, s); u != a.Username {
		t.Fatalf("connected as %q", u)
	}

	// New credentials NATS does not know yet: refused, never used.
	write(b2.Username, b2.Password)
	time.Sleep(20 * credentialsPoll) // what is under test is that nothing happens
	if u := connectedAs(t, s); u != a.Username || len(reconnected) > 0 {
		t.Fatalf("moved to credentials NATS refuses: connected as %q, %d reconnects", u, len(reconnected))
	}

	// 1. NATS takes both: the client moves to the new user by itself.
	if err := s.ReloadOptions(opts(a, b2)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-reconnected:
	case <-time.After(30 * time.Second):
		t.Fatal("the client did not move to the new credentials")
	}
	if u := connectedAs(t, s); u != b2.Username {
		t.Fatalf("after the move, connected as %q", u)
	}
	// 2. NATS forgets the old user: nothing is cut.
	if err := s.ReloadOptions(opts(b2)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := b.JetStream.AccountInfo(ctx); err != nil {
		t.Errorf("JetStream after the rotation: %v", err)
	}
	if len(reconnected) > 0 || b.Conn.Status() != nats.CONNECTED {
		t.Errorf("forgetting the old user cut the connection (%s)", b.Conn.Status())
	}
}

// Ready names what is missing: a stream the replica writes to that does
// not answer, or the connection itself.
func TestReadyAsksTheStreams(t *testing.T) {
	port := freePort(t)
	s, err := startNATS(port, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()
	b, err := Start(context.Background(), Config{URL: "nats://127.0.0.1:" + strconv.Itoa(port), Name: "ready-test", StartTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	if _, err := b.JetStream.CreateStream(ctx, jetstream.StreamConfig{Name: "KEPT", Subjects: []string{"kept.>"}}); err != nil {
		t.Fatal(err)
	}
	if err := b.Ready(ctx, "KEPT"); err != nil {
		t.Errorf("ready with its stream served: %v", err)
	}
	b.lastPass = time.Time{} // starting: no grace
	if err := b.Ready(ctx, "KEPT", "MISSING"); err == nil || !strings.Contains(err.Error(), "MISSING") {
		t.Errorf("ready without stream MISSING: %v, want an error naming it", err)
	}
	// NATS gone: ready for ReadyGrace from the first check that saw it,
	// then not.
	if err := b.Ready(ctx, "KEPT"); err != nil {
		t.Fatal(err)
	}
	s.Shutdown()
	if err := b.Ready(ctx, "KEPT"); err != nil {
		t.Errorf("unready at the first failed check: %v", err)
	}
	b.failingSince = time.Now().Add(-ReadyGrace / 2)
	if err := b.Ready(ctx, "KEPT"); err != nil {
		t.Errorf("unready %s after the first failed check: %v", ReadyGrace/2, err)
	}
	b.failingSince = time.Now().Add(-ReadyGrace)
	if err := b.Ready(ctx, "KEPT"); err == nil {
		t.Errorf("ready with NATS gone for %s", ReadyGrace)
	}
}
