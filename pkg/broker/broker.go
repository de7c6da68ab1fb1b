// Package broker connects terminal-apiserver to NATS: either an embedded
// nats-server with JetStream on a local data dir (the default, so one process
// runs the whole system) or an external NATS cluster.
package broker

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
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
	// UserFile and PasswordFile, if set, hold User and Password (read at
	// start). With URL they are watched: when they change (a Secret's
	// volume the kubelet updated), the broker tries the new credentials on
	// a connection of its own and, if NATS takes them, reconnects with
	// them at once, so that NATS can then be told to forget the old ones
	// without cutting anything (docs/operations.md, "Rotating the NATS
	// credentials"). New credentials NATS refuses are not used: the
	// connection made with the old ones is kept.
	UserFile, PasswordFile string
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
	// stop ends the credential files' watch; closeOnce, Close.
	stop      chan struct{}
	closeOnce sync.Once
	// readyMu guards lastPass (when the last passing check began; zero:
	// none yet) and failingSince (when the first failing check since then
	// began; zero: none).
	readyMu      sync.Mutex
	lastPass     time.Time
	failingSince time.Time
}

// ReadyGrace is how long Ready keeps passing once NATS stops answering or
// a stream has no leader, counted from the first check that saw it (a
// kubelet probing every 10 s sees the failure 10-20 s after it began). A stream whose leader's
// server died has none until its servers elect another (NATS's Raft
// election timeout is 4-9 s); failing then would take every replica out of
// its Service at once, and a request would fail sooner than if it waited
// for the new leader. Past it, the servers have no quorum.
const ReadyGrace = 10 * time.Second

// credentialsPoll is how often UserFile and PasswordFile are checked for
// a change.
var credentialsPoll = 5 * time.Second

// Start connects to NATS, starting the embedded server first if needed.
func Start(ctx context.Context, cfg Config) (*Broker, error) {
	b := &Broker{stop: make(chan struct{})}
	creds := &credentials{userFile: cfg.UserFile, passwordFile: cfg.PasswordFile, user: cfg.User}
	if cfg.UserFile != "" || cfg.PasswordFile != "" {
		var err error
		if cfg.User, cfg.Password, err = creds.read(); err != nil {
			return nil, fmt.Errorf("NATS credentials: %w", err)
		}
		creds.user, creds.password = cfg.User, cfg.Password
	}
	opts := []nats.Option{
		nats.Name(cfg.Name),
		// The API server must keep serving through NATS restarts and
		// leader elections: reconnect forever and let readyz report it.
		nats.MaxReconnects(-1),
		// Not even after a server refused the password twice: while NATS
		// servers move to a rotated password one by one, some refuse it.
		nats.IgnoreAuthErrorAbort(),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectBufSize(8 << 20),
	}
	url := cfg.URL
	watch := url != "" && (cfg.UserFile != "" || cfg.PasswordFile != "")
	var transport []nats.Option // what a connection that tries new credentials needs
	if url == "" {
		srv, err := startEmbedded(cfg)
		if err != nil {
			return nil, err
		}
		b.Embedded = srv
		opts = append(opts, nats.InProcessServer(srv))
	} else {
		if cfg.CredsFile != "" {
			transport = append(transport, nats.UserCredentials(cfg.CredsFile))
		}
		if cfg.NKeySeedFile != "" {
			o, err := nats.NkeyOptionFromSeed(cfg.NKeySeedFile)
			if err != nil {
				return nil, fmt.Errorf("NATS nkey seed %s: %w", cfg.NKeySeedFile, err)
			}
			transport = append(transport, o)
		}
		if cfg.TLSCertFile != "" || cfg.TLSKeyFile != "" {
			transport = append(transport, nats.ClientCert(cfg.TLSCertFile, cfg.TLSKeyFile))
		}
		if cfg.TLSCAFile != "" {
			transport = append(transport, nats.RootCAs(cfg.TLSCAFile))
		}
		opts = append(opts, transport...)
	}
	switch {
	case watch:
		opts = append(opts, nats.UserInfoHandler(creds.current))
	case cfg.Password != "":
		opts = append(opts, nats.UserInfo(cfg.User, cfg.Password))
	}
	if err := b.connect(ctx, url, cfg.StartTimeout, opts); err != nil {
		b.Close()
		return nil, err
	}
	if watch {
		try := func(user, password string) error {
			nc, err := nats.Connect(url, append(transport, nats.Name(cfg.Name+" (new credentials)"),
				nats.UserInfo(user, password), nats.NoReconnect(), nats.Timeout(10*time.Second))...)
			if err != nil {
				return err
			}
			nc.Close()
			return nil
		}
		go b.watchCredentials(creds, try)
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

// Ready reports whether NATS is connected and each of streams has a leader
// that answers; it backs the server's /readyz check. Without a quorum a
// replicated stream has no leader until servers come back, and the replica
// can neither store sessions nor relay terminals. A stream without a
// leader, or no answer, fails the check only once it has lasted
// ReadyGrace, longer than an election with a quorum up takes. The
// cluster's metadata leader is not asked (AccountInfo): its elections
// leave every stream served.
func (b *Broker) Ready(ctx context.Context, streams ...string) error {
	began := time.Now()
	err := b.check(ctx, streams)
	b.readyMu.Lock()
	defer b.readyMu.Unlock()
	switch {
	case err == nil:
		if began.After(b.lastPass) {
			b.lastPass = began
		}
		b.failingSince = time.Time{}
		return nil
	case b.lastPass.IsZero():
		return err // starting: no grace
	case began.Before(b.lastPass):
		return nil // a check older than one that passed since
	case b.failingSince.IsZero():
		b.failingSince = began
	}
	if time.Since(b.failingSince) < ReadyGrace {
		return nil
	}
	// /readyz withholds the reason from its answer: the log has it.
	klog.InfoS("Unready: NATS", "err", err)
	return err
}

func (b *Broker) check(ctx context.Context, streams []string) error {
	if b.Conn == nil || !b.Conn.IsConnected() {
		return errors.New("not connected to NATS")
	}
	// Under the kubelet's probe timeout (the manifests set 3 s), for all
	// streams together.
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	for _, name := range streams {
		s, err := b.JetStream.Stream(ctx, name)
		if err != nil {
			return fmt.Errorf("JetStream stream %s unavailable: %w", name, err)
		}
		if c := s.CachedInfo().Cluster; c != nil && c.Leader == "" {
			return fmt.Errorf("JetStream stream %s has no leader: too few of its NATS servers are up for a quorum, or they are electing one", name)
		}
	}
	return nil
}

// Live fails once the connection is closed for good: it reconnects
// forever otherwise, so only a restart brings a closed one back.
func (b *Broker) Live() error {
	if b.Conn == nil || b.Conn.IsClosed() {
		return errors.New("the NATS connection is closed")
	}
	return nil
}

// Close drains nothing: callers stop their consumers first. It closes the
// connection and shuts the embedded server down.
func (b *Broker) Close() {
	b.closeOnce.Do(func() {
		close(b.stop)
		if b.Conn != nil {
			b.Conn.Close()
		}
		if b.Embedded != nil {
			b.Embedded.Shutdown()
			b.Embedded.WaitForShutdown()
		}
	})
}

// ReadSecretFile reads a file holding one secret (a password), without
// the line end an editor or `kubectl create secret --from-file` leaves.
func ReadSecretFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	secret := strings.TrimRight(string(b), "\r\n")
	if secret == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return secret, nil
}

// credentials are the user and password of UserFile and PasswordFile (or
// User), and the ones NATS took last, which every connection uses.
type credentials struct {
	userFile, passwordFile string

	mu             sync.Mutex
	user, password string
}

// read reads the files.
func (c *credentials) read() (user, password string, err error) {
	user = c.user
	if c.userFile != "" {
		if user, err = ReadSecretFile(c.userFile); err != nil {
			return "", "", err
		}
	}
	if c.passwordFile != "" {
		if password, err = ReadSecretFile(c.passwordFile); err != nil {
			return "", "", err
		}
	}
	return user, password, nil
}

// current is nats.go's nats.UserInfoCB.
func (c *credentials) current() (string, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.user, c.password
}

func (c *credentials) set(user, password string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.user, c.password = user, password
}

func credentialsSum(user, password string) [sha256.Size]byte {
	return sha256.Sum256([]byte(user + "\x00" + password))
}

// watchCredentials moves the connection to the credentials in the files
// when they change and NATS takes them (try), until Close. While NATS
// refuses them, it says so once and keeps the connection it has.
func (b *Broker) watchCredentials(c *credentials, try func(user, password string) error) {
	known := credentialsSum(c.current())
	var refused [sha256.Size]byte
	t := time.NewTicker(credentialsPoll)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
		}
		user, password, err := c.read()
		if err != nil {
			continue // a volume being updated, or an operator's mistake: the next poll looks again
		}
		sum := credentialsSum(user, password)
		if sum == known {
			continue
		}
		if err := try(user, password); err != nil {
			if sum != refused {
				refused = sum
				klog.ErrorS(err, "The NATS credential files changed, but NATS does not take the new credentials yet: "+
					"staying connected with the previous ones, and trying again", "user", user)
			}
			continue
		}
		known = sum
		c.set(user, password)
		klog.InfoS("The NATS credential files changed and NATS takes the new credentials: reconnecting with them", "user", user)
		if err := b.Conn.ForceReconnect(); err != nil {
			klog.ErrorS(err, "Reconnecting to NATS with the new credentials failed")
		}
	}
}
