// Package broker connects terminal-apiserver to NATS: either an embedded
// nats-server with JetStream on a local data dir (the default, so one process
// runs the whole system) or an external NATS cluster.
package broker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"k8s.io/klog/v2"
)

// Config says where NATS is. An empty URL starts an embedded server.
type Config struct {
	// URL of an external NATS cluster (comma-separated seed URLs).
	URL string
	// CredsFile is a NATS user credentials file (JWT + NKey) for URL.
	CredsFile string
	// NKeySeedFile is a NATS NKey seed file for URL.
	NKeySeedFile string
	// User and Password authenticate to URL; with the embedded server
	// listening on TCP (ListenAddress), they are what it requires of every
	// client, this process's own included.
	User, Password string
	// ListenTLSCertFile and ListenTLSKeyFile make the embedded server's TCP
	// listener speak TLS.
	ListenTLSCertFile, ListenTLSKeyFile string
	// TLS client certificate, key and CA bundle for URL.
	TLSCertFile, TLSKeyFile, TLSCAFile string

	// DataDir is the embedded server's JetStream store directory.
	DataDir string
	// ListenAddress makes the embedded server accept TCP clients (host:port),
	// e.g. for the nats CLI or a second replica in development. Empty keeps it
	// in-process only, which is the safe default: nothing else can reach it.
	ListenAddress string
	// MemoryOnly keeps embedded JetStream data in memory (tests).
	MemoryOnly bool
	// MaxStore bounds the embedded server's JetStream file storage
	// (0: nats-server's default, a share of the disk).
	MaxStore int64

	// Name identifies this client in NATS monitoring.
	Name string
	// StartTimeout is how long Start waits for an external NATS to accept
	// the connection and serve JetStream (0: it does not wait). A fresh
	// install applies NATS and this server at once: waiting for NATS beats
	// exiting and being restarted with a growing back-off.
	StartTimeout time.Duration
}

// Broker is a live NATS connection with JetStream.
type Broker struct {
	Conn      *nats.Conn
	JetStream jetstream.JetStream
	// Embedded is the in-process server, nil when URL was given.
	Embedded *server.Server
}

// Start connects to NATS, starting the embedded server first if needed.
func Start(ctx context.Context, cfg Config) (*Broker, error) {
	b := &Broker{}
	opts := []nats.Option{
		nats.Name(cfg.Name),
		// The API server must keep serving through NATS restarts and
		// leader elections: reconnect forever and let readyz report it.
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectBufSize(8 << 20),
	}
	url := cfg.URL
	if cfg.Password != "" {
		opts = append(opts, nats.UserInfo(cfg.User, cfg.Password))
	}
	if url == "" {
		srv, err := startEmbedded(cfg)
		if err != nil {
			return nil, err
		}
		b.Embedded = srv
		opts = append(opts, nats.InProcessServer(srv))
	} else {
		if cfg.CredsFile != "" {
			opts = append(opts, nats.UserCredentials(cfg.CredsFile))
		}
		if cfg.NKeySeedFile != "" {
			o, err := nats.NkeyOptionFromSeed(cfg.NKeySeedFile)
			if err != nil {
				return nil, fmt.Errorf("NATS nkey seed %s: %w", cfg.NKeySeedFile, err)
			}
			opts = append(opts, o)
		}
		if cfg.TLSCertFile != "" || cfg.TLSKeyFile != "" {
			opts = append(opts, nats.ClientCert(cfg.TLSCertFile, cfg.TLSKeyFile))
		}
		if cfg.TLSCAFile != "" {
			opts = append(opts, nats.RootCAs(cfg.TLSCAFile))
		}
	}
	if err := b.connect(ctx, url, cfg.StartTimeout, opts); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

// connect dials NATS and waits until JetStream answers, retrying both for
// up to wait.
func (b *Broker) connect(ctx context.Context, url string, wait time.Duration, opts []nats.Option) error {
	deadline := time.Now().Add(wait)
	for attempt := 0; ; attempt++ {
		err := b.tryConnect(ctx, url, opts)
		if err == nil {
			return nil
		}
		// A wrong password or certificate does not heal by waiting.
		if time.Now().After(deadline) || ctx.Err() != nil || permanent(err) {
			return err
		}
		if attempt == 0 {
			klog.InfoS("Waiting for NATS", "url", displayURL(url), "err", err, "for", wait)
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Second):
		}
	}
}

// permanent says whether a connection error is one of configuration:
// credentials or certificates that NATS refused, or that do not verify.
func permanent(err error) bool {
	var verify *tls.CertificateVerificationError
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	return errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) ||
		errors.As(err, &verify) || errors.As(err, &unknownCA) || errors.As(err, &hostname) || errors.As(err, &invalid)
}

func (b *Broker) tryConnect(ctx context.Context, url string, opts []nats.Option) error {
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return fmt.Errorf("connect to NATS %q: %w", displayURL(url), err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return fmt.Errorf("jetstream: %w", err)
	}
	// A cluster serves JetStream once its servers have elected a meta
	// leader; until then the server could create no stream.
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := js.AccountInfo(actx); err != nil {
		nc.Close()
		return fmt.Errorf("JetStream at NATS %q: %w", displayURL(url), err)
	}
	b.Conn, b.JetStream = nc, js
	return nil
}

func displayURL(url string) string {
	if url == "" {
		return "embedded"
	}
	return url
}

func startEmbedded(cfg Config) (*server.Server, error) {
	opts := &server.Options{
		ServerName: cfg.Name,
		JetStream:  true,
		StoreDir:   cfg.DataDir,
		NoSigs:     true,
		NoLog:      true,
		DontListen: cfg.ListenAddress == "",
	}
	if cfg.MemoryOnly {
		opts.JetStreamMaxStore = 0
	} else if cfg.MaxStore > 0 {
		opts.JetStreamMaxStore = cfg.MaxStore
	}
	if cfg.ListenAddress != "" {
		// Whoever can publish to the object stream can create a session
		// owned by anyone, and whoever reads terminal.*.in reads every
		// keystroke: a listener is never open without a password.
		if cfg.Password == "" || cfg.User == "" {
			return nil, errors.New("the embedded NATS server listens on TCP only with a user and password " +
				"(--nats-user, --nats-password-file): NATS access is exec access to every session")
		}
		opts.Users = []*server.User{{Username: cfg.User, Password: cfg.Password}}
		if cfg.ListenTLSCertFile != "" {
			tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: cfg.ListenTLSCertFile, KeyFile: cfg.ListenTLSKeyFile})
			if err != nil {
				return nil, fmt.Errorf("embedded NATS TLS: %w", err)
			}
			opts.TLSConfig, opts.TLS = tc, true
		}
		host, port, err := net.SplitHostPort(cfg.ListenAddress)
		if err != nil {
			return nil, fmt.Errorf("embedded NATS listen address %q: %w", cfg.ListenAddress, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			return nil, fmt.Errorf("embedded NATS listen port %q: %w", port, err)
		}
		opts.Host, opts.Port = host, p
		// nats-server reports a busy port only in its (silenced) log and then
		// never becomes ready: check first, for an error that says why.
		l, err := net.Listen("tcp", cfg.ListenAddress)
		if err != nil {
			return nil, fmt.Errorf("embedded NATS cannot listen on %s: %w", cfg.ListenAddress, err)
		}
		l.Close()
	}
	if cfg.DataDir == "" && !cfg.MemoryOnly {
		return nil, errors.New("embedded NATS needs a data dir (--nats-data-dir)")
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return nil, errors.New("embedded NATS did not become ready within 30s")
	}
	return srv, nil
}

// Ready reports whether NATS is connected and JetStream answers; it backs the
// server's /readyz check.
func (b *Broker) Ready(ctx context.Context) error {
	if b.Conn == nil || !b.Conn.IsConnected() {
		return errors.New("not connected to NATS")
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := b.JetStream.AccountInfo(ctx); err != nil {
		return fmt.Errorf("JetStream unavailable: %w", err)
	}
	return nil
}

// Close drains nothing: callers stop their consumers first. It closes the
// connection and shuts the embedded server down.
func (b *Broker) Close() {
	if b.Conn != nil {
		b.Conn.Close()
	}
	if b.Embedded != nil {
		b.Embedded.Shutdown()
		b.Embedded.WaitForShutdown()
	}
}
