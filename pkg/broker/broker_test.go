package broker

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
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
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir, NoSigs: true, NoLog: true})
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
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, NoSigs: true, NoLog: true,
		Username: "terminal-apiserver", Password: "right"})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	defer s.Shutdown()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS did not start")
	}
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
