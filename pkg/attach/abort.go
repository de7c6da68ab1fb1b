package attach

import (
	"bufio"
	"net"
	"net/http"
	"sync"
)

// Abortable wraps w so that the connection it hands over on Hijack (both
// SPDY and WebSocket upgrades hijack it) can be closed from outside: abort
// breaks a write blocked on a viewer that stopped reading, which neither
// streaming server can otherwise do.
func Abortable(w http.ResponseWriter) (http.ResponseWriter, func()) {
	a := &abortable{ResponseWriter: w}
	return a, a.abort
}

type abortable struct {
	http.ResponseWriter
	mu      sync.Mutex
	conn    net.Conn
	aborted bool
}

func (a *abortable) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, rw, err := http.NewResponseController(a.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.conn = conn
	if a.aborted {
		_ = conn.Close()
	}
	return conn, rw, nil
}

// Flush keeps the wrapped writer's flushing (http.Flusher).
func (a *abortable) Flush() { _ = http.NewResponseController(a.ResponseWriter).Flush() }

// Unwrap lets http.ResponseController reach the wrapped writer.
func (a *abortable) Unwrap() http.ResponseWriter { return a.ResponseWriter }

// abort closes the hijacked connection: a TLS connection closed during a
// write drops it without a close alert, which could block too.
func (a *abortable) abort() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.aborted = true
	if a.conn != nil {
		_ = a.conn.Close()
	}
}
