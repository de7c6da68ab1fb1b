// Package app is terminal-apiserver's command: flags, configuration and run.
package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"regexp"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apiserver/pkg/endpoints/openapi"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/apiserver/pkg/server/healthz"
	genericoptions "k8s.io/apiserver/pkg/server/options"
	serverstorage "k8s.io/apiserver/pkg/server/storage"
	"k8s.io/apiserver/pkg/util/compatibility"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/client-go/kubernetes"
	basecompatibility "k8s.io/component-base/compatibility"
	logsapi "k8s.io/component-base/logs/api/v1"
	"k8s.io/klog/v2"

	// --logging-format=json, for log pipelines that index fields.
	_ "k8s.io/component-base/logs/json/register"
	baseversion "k8s.io/component-base/version"
	netutils "k8s.io/utils/net"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal"
	"github.com/meshery/terminal-apiserver/pkg/apis/terminal/v1alpha1"
	"github.com/meshery/terminal-apiserver/pkg/apiserver"
	"github.com/meshery/terminal-apiserver/pkg/attach"
	"github.com/meshery/terminal-apiserver/pkg/bridge"
	"github.com/meshery/terminal-apiserver/pkg/broker"
	clientset "github.com/meshery/terminal-apiserver/pkg/generated/clientset/versioned"
	generatedopenapi "github.com/meshery/terminal-apiserver/pkg/generated/openapi"
	"github.com/meshery/terminal-apiserver/pkg/kvstore"
	"github.com/meshery/terminal-apiserver/pkg/metrics"
	"github.com/meshery/terminal-apiserver/pkg/registry/terminalsession"
	"github.com/meshery/terminal-apiserver/pkg/version"
	"github.com/meshery/terminal-apiserver/pkg/wire"
)

// Options are terminal-apiserver's flags.
type Options struct {
	Recommended *genericoptions.RecommendedOptions
	NATS        NATSOptions
	Sessions    bridge.Limits
	// MaxSessionsPerUser caps one user's open sessions (0: no limit).
	MaxSessionsPerUser int
	// Attach bounds concurrent attaches per user and per session.
	Attach terminalsession.AttachLimits
	// AllowedOrigins are the browser origins that may attach.
	AllowedOrigins []string
	// Transcripts: what is recorded of each session, and kept how long.
	Transcripts bridge.Transcripts
	// TranscriptRedact are --transcript-redact's expressions, compiled
	// into Transcripts.Redact by Validate.
	TranscriptRedact []string
	// ComponentGlobalsRegistry holds the effective version and feature gates.
	ComponentGlobalsRegistry basecompatibility.ComponentGlobalsRegistry
	// Logs are component-base's logging flags (--logging-format, -v).
	Logs *logsapi.LoggingConfiguration
	// PrintVersion: print the build's version and exit.
	PrintVersion bool
	// ShutdownDrainTimeout is how long the sessions this replica runs may
	// go on after SIGTERM (bridge.Drain).
	ShutdownDrainTimeout time.Duration
	// ShutdownDelay keeps the port open after SIGTERM, /readyz failing,
	// while the Service's endpoints drop the replica (k8s.io/apiserver's
	// ShutdownDelayDuration, kube-apiserver's flag of the same name).
	ShutdownDelay time.Duration
}

func init() {
	// The logging options' own gates (as kube-apiserver registers them).
	if err := logsapi.AddFeatureGates(utilfeature.DefaultMutableFeatureGate); err != nil {
		panic(err)
	}
}

// NATSOptions say where NATS is and how objects are stored in it.
type NATSOptions struct {
	URL, CredsFile, TLSCertFile, TLSKeyFile, TLSCAFile string
	NKeySeedFile, User, UserFile, PasswordFile         string
	ListenTLSCertFile, ListenTLSKeyFile                string
	DataDir, ListenAddress                             string
	StreamReplicas                                     int
	StartTimeout                                       time.Duration
	WatchHistory                                       int
	WatchHistoryBytes                                  int
	ScrollbackFrames                                   int
	OutputBytes                                        int64
}

// AddFlags registers the NATS flags.
func (o *NATSOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.URL, "nats-url", o.URL, "URL(s) of an external NATS cluster with JetStream (comma-separated). "+
		"Empty starts an embedded NATS server with JetStream in --nats-data-dir.")
	fs.StringVar(&o.CredsFile, "nats-creds", o.CredsFile, "NATS user credentials file (JWT and NKey) for --nats-url.")
	fs.StringVar(&o.NKeySeedFile, "nats-nkey-seed-file", o.NKeySeedFile, "NATS NKey seed file for --nats-url.")
	fs.StringVar(&o.User, "nats-user", o.User, "NATS user for --nats-url; with --nats-listen-address, the user the embedded "+
		"server requires of every client.")
	fs.StringVar(&o.UserFile, "nats-user-file", o.UserFile, "File holding the NATS user (then --nats-user is ignored). With --nats-url, it and "+
		"--nats-password-file are watched: when they change (a rotated Secret) and NATS takes the new credentials, the server "+
		"reconnects with them, without a restart.")
	fs.StringVar(&o.PasswordFile, "nats-password-file", o.PasswordFile, "File holding the NATS user's password, watched as --nats-user-file is. "+
		"Required with --nats-listen-address: NATS access is exec access to every session.")
	fs.StringVar(&o.ListenTLSCertFile, "nats-listen-tls-cert-file", o.ListenTLSCertFile, "Serving certificate of the embedded "+
		"NATS server's TCP listener (TLS).")
	fs.StringVar(&o.ListenTLSKeyFile, "nats-listen-tls-key-file", o.ListenTLSKeyFile, "Key of --nats-listen-tls-cert-file.")
	fs.StringVar(&o.TLSCertFile, "nats-tls-cert-file", o.TLSCertFile, "Client certificate for --nats-url.")
	fs.StringVar(&o.TLSKeyFile, "nats-tls-key-file", o.TLSKeyFile, "Client key for --nats-url.")
	fs.StringVar(&o.TLSCAFile, "nats-tls-ca-file", o.TLSCAFile, "CA bundle that verifies --nats-url's servers.")
	fs.StringVar(&o.DataDir, "nats-data-dir", o.DataDir, "JetStream store directory of the embedded NATS server. "+
		"Sessions survive restarts as long as this directory does.")
	fs.StringVar(&o.ListenAddress, "nats-listen-address", o.ListenAddress, "host:port on which the embedded NATS server "+
		"accepts clients (other replicas, the nats CLI). Empty: in-process only.")
	fs.DurationVar(&o.StartTimeout, "nats-start-timeout", o.StartTimeout, "How long to wait at start for --nats-url to "+
		"accept the connection and serve JetStream before exiting (NATS may be starting too, as on a fresh install).")
	fs.IntVar(&o.StreamReplicas, "nats-stream-replicas", o.StreamReplicas, "Replicas of each JetStream stream; 3 on a "+
		"production cluster.")
	fs.Int64Var(&o.OutputBytes, "output-stream-bytes", o.OutputBytes, "Bytes of output kept for all sessions together "+
		"(the TERMINAL_IO stream, reserved in JetStream); when full, the oldest output of any session is dropped.")
	fs.IntVar(&o.ScrollbackFrames, "scrollback-frames", o.ScrollbackFrames, "Output frames (up to 32 KiB each) kept per "+
		"session for viewers that attach late or reconnect.")
	fs.IntVar(&o.WatchHistory, "watch-history", o.WatchHistory, "Changes each replica keeps in memory per resource for "+
		"watches and lists at a past resourceVersion; older resourceVersions get 410 Gone and clients relist.")
	fs.IntVar(&o.WatchHistoryBytes, "watch-history-bytes", o.WatchHistoryBytes, "Bytes of objects that history may "+
		"hold per resource, whatever --watch-history says; the oldest changes are forgotten first.")
}

// Validate checks the NATS flags.
func (o *NATSOptions) Validate() []error {
	var errs []error
	if o.URL == "" && o.DataDir == "" {
		errs = append(errs, fmt.Errorf("--nats-data-dir is required when --nats-url is empty"))
	}
	if o.URL == "" && (o.CredsFile != "" || o.NKeySeedFile != "" || o.TLSCertFile != "" || o.TLSCAFile != "") {
		errs = append(errs, fmt.Errorf("--nats-creds, --nats-nkey-seed-file and --nats-tls-* need --nats-url"))
	}
	if o.ListenAddress != "" && o.URL == "" && o.PasswordFile == "" {
		errs = append(errs, fmt.Errorf("--nats-listen-address needs --nats-password-file: NATS access is exec access to every session"))
	}
	if o.UserFile != "" && o.PasswordFile == "" {
		errs = append(errs, fmt.Errorf("--nats-user-file needs --nats-password-file"))
	}
	if o.ListenAddress == "" && (o.ListenTLSCertFile != "" || o.ListenTLSKeyFile != "") {
		errs = append(errs, fmt.Errorf("--nats-listen-tls-* need --nats-listen-address"))
	}
	if (o.ListenTLSCertFile == "") != (o.ListenTLSKeyFile == "") {
		errs = append(errs, fmt.Errorf("--nats-listen-tls-cert-file and --nats-listen-tls-key-file go together"))
	}
	if (o.TLSCertFile == "") != (o.TLSKeyFile == "") {
		errs = append(errs, fmt.Errorf("--nats-tls-cert-file and --nats-tls-key-file go together"))
	}
	if o.StreamReplicas < 1 || o.StreamReplicas > 5 {
		errs = append(errs, fmt.Errorf("--nats-stream-replicas must be between 1 and 5, got %d", o.StreamReplicas))
	}
	if o.StartTimeout < 0 {
		errs = append(errs, fmt.Errorf("--nats-start-timeout must not be negative, got %s", o.StartTimeout))
	}
	if o.OutputBytes < 64<<20 {
		errs = append(errs, fmt.Errorf("--output-stream-bytes must be at least 64 MiB, got %d", o.OutputBytes))
	}
	if o.ScrollbackFrames < 1 {
		errs = append(errs, fmt.Errorf("--scrollback-frames must be positive, got %d", o.ScrollbackFrames))
	}
	if o.WatchHistory < 100 {
		errs = append(errs, fmt.Errorf("--watch-history must be at least 100, got %d", o.WatchHistory))
	}
	if o.WatchHistoryBytes < 4*kvstore.DefaultMaxObjectBytes {
		errs = append(errs, fmt.Errorf("--watch-history-bytes must be at least %d (four objects of the largest size), got %d",
			4*kvstore.DefaultMaxObjectBytes, o.WatchHistoryBytes))
	}
	return errs
}

// NewOptions returns the defaults.
func NewOptions() *Options {
	o := &Options{
		// etcd is replaced by NATS: no codec needed here.
		Recommended: genericoptions.NewRecommendedOptions("/registry", nil),
		NATS: NATSOptions{
			User:           "terminal-apiserver",
			DataDir:        "/var/lib/terminal-apiserver/nats",
			StreamReplicas: 1,
			StartTimeout:   2 * time.Minute,
			WatchHistory:   10000,
			// 10,000 changes of a typical session (2-3 KiB) fit; the
			// bound is for large objects.
			WatchHistoryBytes: 64 << 20,
			ScrollbackFrames:  1000,
			OutputBytes:       bridge.DefaultOutputBytes,
		},
		Sessions: bridge.Limits{
			DefaultIdleTimeout:    30 * time.Minute,
			DefaultMaxDuration:    8 * time.Hour,
			DefaultTTLAfterClosed: time.Hour,
			// Long enough to survive a laptop lid or a flaky network,
			// short enough that a closed tab does not leave a shell open
			// for the rest of the day.
			DefaultDetachGracePeriod: 15 * time.Minute,
			// Ceilings, so that no session lives forever by default. A
			// shell is a credential in use: on a shared cluster an
			// operator wants every one of them gone within a day (a
			// working day plus overtime), never idle for more than a
			// long meeting, and never left with nobody watching for
			// more than an hour. Raise them per cluster with the flags.
			MaxIdleTimeout:       4 * time.Hour,
			MaxMaxDuration:       24 * time.Hour,
			MaxDetachGracePeriod: time.Hour,
		},
		MaxSessionsPerUser: 20,
		// A month of transcripts, 16 MiB each at most, 1 GiB in all.
		Transcripts: bridge.Transcripts{Enabled: true, MaxBytes: 16 << 20, Retention: 30 * 24 * time.Hour, StorageBytes: 1 << 30},
		// A person has a few tabs and a reconnect in flight per session;
		// a session has a handful of people watching. Both are per
		// replica, which is what they protect.
		Attach:                   terminalsession.AttachLimits{PerUser: 64, PerSession: 32},
		ComponentGlobalsRegistry: compatibility.DefaultComponentGlobalsRegistry,
		Logs:                     logsapi.NewLoggingConfiguration(),
	}
	o.Recommended.Etcd = nil
	return o
}

// NewCommand is the terminal-apiserver command.
func NewCommand(ctx context.Context) *cobra.Command {
	o := NewOptions()
	cmd := &cobra.Command{
		Use:   "terminal-apiserver",
		Short: "Kubernetes aggregated API server for TerminalSessions (terminal.meshery.io)",
		Long: "terminal-apiserver serves the TerminalSession resource through the Kubernetes aggregation layer, " +
			"so Kubernetes authentication, RBAC and audit cover every terminal. Objects live in NATS JetStream.",
		SilenceUsage: true,
		PersistentPreRunE: func(*cobra.Command, []string) error {
			return o.ComponentGlobalsRegistry.Set()
		},
		RunE: func(c *cobra.Command, _ []string) error {
			if o.PrintVersion {
				_, err := fmt.Fprintln(c.OutOrStdout(), "terminal-apiserver", version.Get())
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			// Applied before anything logs, so every line has the chosen format.
			if err := logsapi.ValidateAndApply(o.Logs, o.ComponentGlobalsRegistry.FeatureGateFor(basecompatibility.DefaultKubeComponent)); err != nil {
				return err
			}
			return o.Run(c.Context())
		},
	}
	cmd.SetContext(ctx)
	fs := cmd.Flags()
	o.Recommended.AddFlags(fs)
	o.NATS.AddFlags(fs)
	logsapi.AddFlags(o.Logs, fs)
	fs.BoolVar(&o.PrintVersion, "version", false, "Print the version, commit and build, and exit.")
	fs.DurationVar(&o.ShutdownDrainTimeout, "shutdown-drain-timeout", o.ShutdownDrainTimeout,
		"On SIGTERM, how long the sessions this replica runs may go on (their viewers are told when the drain begins) "+
			"before they are closed with the reason ServerShutdown; new sessions go to the other replicas at once. "+
			"Keep the pod's terminationGracePeriodSeconds at least 20 s above it (the manifests: 5m and 330 s). 0: close at once.")
	fs.DurationVar(&o.ShutdownDelay, "shutdown-delay-duration", o.ShutdownDelay,
		"On SIGTERM, how long to keep serving new requests with /readyz failing, so that the Service stops sending "+
			"them here before the port closes (a replica that runs no session stops at once otherwise, and a request "+
			"sent meanwhile is refused). Runs alongside --shutdown-drain-timeout. The manifests: 10s.")
	fs.IntVar(&o.MaxSessionsPerUser, "max-sessions-per-user", o.MaxSessionsPerUser,
		"Open (Pending or Running) sessions one user may have across all namespaces; more get 429. 0: no limit.")
	fs.StringSliceVar(&o.AllowedOrigins, "allowed-origins", o.AllowedOrigins,
		"Browser origins (scheme://host[:port]) whose pages may attach, e.g. http://localhost:8001 for kubectl proxy --www. "+
			"An attach with any other Origin header gets 403; clients that send none (kubectl, client-go) are not affected. "+
			"Empty: no web page may attach.")
	fs.IntVar(&o.Attach.PerUser, "max-attaches-per-user", o.Attach.PerUser,
		"Concurrent attaches one user may have on one replica; more get 429. 0: no limit.")
	fs.IntVar(&o.Attach.PerSession, "max-viewers-per-session", o.Attach.PerSession,
		"Concurrent attaches to one session on one replica; more get 429. 0: no limit.")
	fs.BoolVar(&o.Transcripts.Enabled, "transcripts", o.Transcripts.Enabled,
		"Record every session's output (asciicast v2) in the TERMINAL_TRANSCRIPTS stream.")
	fs.BoolVar(&o.Transcripts.Input, "transcript-input", o.Transcripts.Input,
		"Record what viewers type too. Passwords typed at a prompt end up in transcripts: off by default.")
	fs.Int64Var(&o.Transcripts.MaxBytes, "transcript-max-bytes", o.Transcripts.MaxBytes,
		"Bytes of one session's transcript; past it the session goes on unrecorded and its transcript says where it was cut.")
	fs.DurationVar(&o.Transcripts.Retention, "transcript-retention", o.Transcripts.Retention,
		"How long transcripts are kept, whether or not their session still exists.")
	fs.StringArrayVar(&o.TranscriptRedact, "transcript-redact", o.TranscriptRedact,
		"A regular expression (RE2) whose matches are masked with '*' in transcripts, never in the live output; repeat "+
			"for several. A match is masked even when the process wrote it in pieces, if it ends a line or is under 4 KiB.")
	fs.Int64Var(&o.Transcripts.StorageBytes, "transcript-storage-bytes", o.Transcripts.StorageBytes,
		"Bytes of transcripts kept for all sessions together (reserved in JetStream); when full, the oldest go first.")
	fs.DurationVar(&o.Sessions.DefaultIdleTimeout, "idle-timeout-default", o.Sessions.DefaultIdleTimeout,
		"Idle timeout of sessions whose spec.idleTimeout is empty; 0: none, allowed only with --idle-timeout-max=0.")
	fs.DurationVar(&o.Sessions.MaxIdleTimeout, "idle-timeout-max", o.Sessions.MaxIdleTimeout,
		"Ceiling on any session's idle timeout; a spec above it gets 422. 0: no ceiling.")
	fs.DurationVar(&o.Sessions.DefaultMaxDuration, "max-duration-default", o.Sessions.DefaultMaxDuration,
		"Maximum duration of sessions whose spec.maxDuration is empty; 0: none, allowed only with --max-duration-max=0.")
	fs.DurationVar(&o.Sessions.MaxMaxDuration, "max-duration-max", o.Sessions.MaxMaxDuration,
		"Ceiling on any session's maximum duration; a spec above it gets 422. 0: no ceiling.")
	fs.DurationVar(&o.Sessions.DefaultDetachGracePeriod, "detach-grace-period-default", o.Sessions.DefaultDetachGracePeriod,
		"How long sessions whose spec.detachGracePeriod is empty may have no viewer attached before they close; 0: forever, allowed only with --detach-grace-period-max=0.")
	fs.DurationVar(&o.Sessions.MaxDetachGracePeriod, "detach-grace-period-max", o.Sessions.MaxDetachGracePeriod,
		"Ceiling on any session's detach grace period; a spec above it gets 422. 0: no ceiling.")
	fs.DurationVar(&o.Sessions.DefaultTTLAfterClosed, "ttl-after-closed-default", o.Sessions.DefaultTTLAfterClosed,
		"How long closed sessions whose spec.ttlAfterClosed is empty are kept before deletion; 0: until deleted.")
	_, _ = o.ComponentGlobalsRegistry.ComponentGlobalsOrRegister(basecompatibility.DefaultKubeComponent,
		basecompatibility.NewEffectiveVersionFromString(baseversion.DefaultKubeBinaryVersion, "", ""), utilfeature.DefaultMutableFeatureGate)
	o.ComponentGlobalsRegistry.AddFlags(fs)
	return cmd
}

// Validate checks all flags.
func (o *Options) Validate() error {
	errs := o.Recommended.Validate()
	errs = append(errs, o.NATS.Validate()...)
	o.Transcripts.Redact = nil
	for _, expr := range o.TranscriptRedact {
		re, err := regexp.Compile(expr)
		if err != nil {
			errs = append(errs, fmt.Errorf("--transcript-redact %q: %w", expr, err))
			continue
		}
		o.Transcripts.Redact = append(o.Transcripts.Redact, re)
	}
	if o.Transcripts.Enabled {
		if o.Transcripts.MaxBytes < 4<<10 {
			errs = append(errs, fmt.Errorf("--transcript-max-bytes must be at least 4096, got %d", o.Transcripts.MaxBytes))
		}
		if o.Transcripts.Retention < time.Minute {
			errs = append(errs, fmt.Errorf("--transcript-retention must be at least a minute, got %s", o.Transcripts.Retention))
		}
		if o.Transcripts.StorageBytes < o.Transcripts.MaxBytes {
			errs = append(errs, fmt.Errorf("--transcript-storage-bytes (%d) must hold at least one transcript (--transcript-max-bytes, %d)",
				o.Transcripts.StorageBytes, o.Transcripts.MaxBytes))
		}
	}
	for name, n := range map[string]int{"--max-sessions-per-user": o.MaxSessionsPerUser,
		"--max-attaches-per-user": o.Attach.PerUser, "--max-viewers-per-session": o.Attach.PerSession} {
		if n < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative, got %d", name, n))
		}
	}
	// A default above its ceiling, or "none" under a ceiling, would make
	// every session that leaves the field out break the ceiling.
	for _, c := range []struct {
		def, ceiling time.Duration
		name         string
	}{
		{o.Sessions.DefaultIdleTimeout, o.Sessions.MaxIdleTimeout, "idle-timeout"},
		{o.Sessions.DefaultMaxDuration, o.Sessions.MaxMaxDuration, "max-duration"},
		{o.Sessions.DefaultDetachGracePeriod, o.Sessions.MaxDetachGracePeriod, "detach-grace-period"},
	} {
		if c.ceiling > 0 && (c.def == 0 || c.def > c.ceiling) {
			errs = append(errs, fmt.Errorf("--%s-default (%s) must be within --%s-max (%s); 0 (none) is not", c.name, c.def, c.name, c.ceiling))
		}
	}
	for name, d := range map[string]time.Duration{
		"--shutdown-drain-timeout": o.ShutdownDrainTimeout, "--shutdown-delay-duration": o.ShutdownDelay,
		"--idle-timeout-default": o.Sessions.DefaultIdleTimeout, "--idle-timeout-max": o.Sessions.MaxIdleTimeout,
		"--max-duration-default": o.Sessions.DefaultMaxDuration, "--max-duration-max": o.Sessions.MaxMaxDuration,
		"--ttl-after-closed-default":    o.Sessions.DefaultTTLAfterClosed,
		"--detach-grace-period-default": o.Sessions.DefaultDetachGracePeriod,
		"--detach-grace-period-max":     o.Sessions.MaxDetachGracePeriod,
	} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative, got %s", name, d))
		}
	}
	errs = append(errs, o.ComponentGlobalsRegistry.Validate()...)
	return utilerrors.NewAggregate(errs)
}

// Run starts NATS (or connects to it) and serves until ctx ends.
func (o *Options) Run(ctx context.Context) error {
	if o.NATS.URL == "" {
		if err := os.MkdirAll(o.NATS.DataDir, 0o700); err != nil {
			return fmt.Errorf("NATS data dir: %w", err)
		}
	}
	hostname, _ := os.Hostname()
	b, err := broker.Start(ctx, broker.Config{
		URL:               o.NATS.URL,
		CredsFile:         o.NATS.CredsFile,
		NKeySeedFile:      o.NATS.NKeySeedFile,
		User:              o.NATS.User,
		UserFile:          o.NATS.UserFile,
		PasswordFile:      o.NATS.PasswordFile,
		ListenTLSCertFile: o.NATS.ListenTLSCertFile,
		ListenTLSKeyFile:  o.NATS.ListenTLSKeyFile,
		TLSCertFile:       o.NATS.TLSCertFile,
		TLSKeyFile:        o.NATS.TLSKeyFile,
		TLSCAFile:         o.NATS.TLSCAFile,
		DataDir:           o.NATS.DataDir,
		ListenAddress:     o.NATS.ListenAddress,
		Name:              "terminal-apiserver-" + hostname,
		StartTimeout:      o.NATS.StartTimeout,
	})
	if err != nil {
		return err
	}
	defer b.Close()
	metrics.Register(b.Conn.IsConnected)

	config, err := o.Config(b)
	if err != nil {
		return err
	}
	server, err := config.Complete().New()
	if err != nil {
		return err
	}
	getter := config.RESTOptionsGetter.(*kvstore.RESTOptionsGetter)
	kubeConfig := config.GenericConfig.ClientConfig
	// Shutdown, one hook so that its steps keep their order. k8s.io/apiserver
	// runs it as SIGTERM arrives, while /readyz fails (so the Service sends
	// new requests elsewhere) and before it stops serving:
	//   - the bridge drains: no new claims, and the sessions it runs go on
	//     for --shutdown-drain-timeout (attach streams and watches are served
	//     meanwhile: the bridge's own informer watches through this server),
	//     then close with the reason ServerShutdown;
	//   - watches would hold the HTTP server until the shutdown timeout: end
	//     them, and clients rewatch on another replica;
	//   - the bridge stops and is waited for, so no goroutine of it outlives
	//     the server.
	// The pod's terminationGracePeriodSeconds must cover the drain and
	// drainSlack.
	const drainSlack = 20 * time.Second
	var stopping sync.Mutex
	var stopBridge context.CancelFunc
	var running *bridge.Bridge
	shuttingDown := false
	bridgeDone := make(chan struct{})
	server.GenericAPIServer.AddPreShutdownHookOrDie("drain", func() error {
		stopping.Lock()
		stop, br := stopBridge, running
		shuttingDown = true // a bridge not started yet never will be
		stopping.Unlock()
		if stop != nil {
			ctx, cancel := context.WithTimeout(context.Background(), o.ShutdownDrainTimeout+drainSlack)
			defer cancel()
			br.Drain(ctx, o.ShutdownDrainTimeout)
		}
		getter.StopWatches()
		if stop != nil {
			stop()
			select {
			case <-bridgeDone:
			case <-time.After(drainSlack):
				klog.InfoS("The bridge did not stop in time; exiting anyway")
			}
		}
		return nil
	})
	server.GenericAPIServer.AddPostStartHookOrDie("terminal-bridge", func(hook genericapiserver.PostStartHookContext) error {
		sessions, err := clientset.NewForConfig(hook.LoopbackClientConfig)
		if err != nil {
			return err
		}
		brCfg := bridge.Config{
			Conn:             b.Conn,
			JetStream:        b.JetStream,
			KubeConfig:       kubeConfig,
			Sessions:         sessions,
			Holder:           hostname + "-" + string(uuid.NewUUID()),
			ScrollbackFrames: o.NATS.ScrollbackFrames,
			OutputBytes:      o.NATS.OutputBytes,
			Replicas:         o.NATS.StreamReplicas,
			Limits:           o.Sessions,
			Transcripts:      o.Transcripts,
		}
		// NATS servers that have just formed a cluster may take a while to
		// place a stream's replicas: retry for --nats-start-timeout, as at
		// connect, rather than exit and be restarted with a back-off.
		var br *bridge.Bridge
		var lastErr error
		err = wait.PollUntilContextTimeout(hook, time.Second, max(o.NATS.StartTimeout, 15*time.Second), true, func(ctx context.Context) (bool, error) {
			// Each attempt bounded: a request made before the cluster elected
			// its meta leader is dropped, and would wait out the whole timeout.
			ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			defer cancel()
			if br, lastErr = bridge.New(ctx, brCfg); lastErr != nil {
				klog.InfoS("Waiting for NATS to create the bridge's streams", "err", lastErr)
				return false, nil
			}
			return true, nil
		})
		if hook.Err() != nil {
			return nil // shutting down while it waited: nothing to report
		}
		if err != nil {
			return errors.Join(err, lastErr)
		}
		ctx, cancel := context.WithCancel(hook)
		stopping.Lock()
		if shuttingDown {
			stopping.Unlock()
			cancel()
			close(bridgeDone)
			return nil
		}
		stopBridge, running = cancel, br
		stopping.Unlock()
		go func() {
			defer close(bridgeDone)
			br.Run(ctx)
		}()
		config.Relay.SetLocal(br)
		return nil
	})
	return server.GenericAPIServer.PrepareRun().RunWithContext(ctx)
}

// Config builds the server configuration on a connected broker.
func (o *Options) Config(b *broker.Broker) (*apiserver.Config, error) {
	if err := o.Recommended.SecureServing.MaybeDefaultWithSelfSignedCerts("localhost", nil,
		[]net.IP{netutils.ParseIPSloppy("127.0.0.1")}); err != nil {
		return nil, fmt.Errorf("self-signed certificates: %w", err)
	}
	cfg := genericapiserver.NewRecommendedConfig(apiserver.Codecs)
	cfg.Serializer = apiserver.Serializer
	namer := openapi.NewDefinitionNamer(apiserver.Scheme)
	cfg.OpenAPIConfig = genericapiserver.DefaultOpenAPIConfig(generatedopenapi.GetOpenAPIDefinitions, namer)
	cfg.OpenAPIConfig.Info.Title = "terminal-apiserver"
	cfg.OpenAPIConfig.Info.Version = v1alpha1.SchemeGroupVersion.Version
	cfg.OpenAPIV3Config = genericapiserver.DefaultOpenAPIV3Config(generatedopenapi.GetOpenAPIDefinitions, namer)
	cfg.OpenAPIV3Config.Info.Title = "terminal-apiserver"
	cfg.OpenAPIV3Config.Info.Version = v1alpha1.SchemeGroupVersion.Version
	cfg.FeatureGate = o.ComponentGlobalsRegistry.FeatureGateFor(basecompatibility.DefaultKubeComponent)
	cfg.EffectiveVersion = o.ComponentGlobalsRegistry.EffectiveVersionFor(basecompatibility.DefaultKubeComponent)
	if err := o.Recommended.ApplyTo(cfg); err != nil {
		return nil, err
	}
	cfg.RequestInfoResolver = apiserver.WithAttachAsCreate(genericapiserver.NewRequestInfoResolver(&cfg.Config))
	cfg.LongRunningFunc = apiserver.LongRunning
	cfg.ShutdownDelayDuration = o.ShutdownDelay
	// The core-API client (--kubeconfig, else in-cluster) is the server's own identity;
	// it asks kube-apiserver whether a user may exec into a session's target.
	if cfg.ClientConfig == nil {
		return nil, fmt.Errorf("no kube-apiserver client configuration: set --kubeconfig or run in a cluster")
	}
	// Every create asks kube-apiserver twice (SubjectAccessReview, pod):
	// client-go's default of 5 QPS would make that the server's limit.
	// kube-apiserver's priority and fairness still protects it.
	cfg.ClientConfig.QPS, cfg.ClientConfig.Burst = 200, 400
	kubeClient, err := kubernetes.NewForConfig(cfg.ClientConfig)
	if err != nil {
		return nil, fmt.Errorf("kube-apiserver client: %w", err)
	}
	codec, _, err := serverstorage.NewStorageCodec(serverstorage.StorageCodecConfig{
		StorageMediaType:  "application/json",
		StorageSerializer: apiserver.Codecs,
		StorageVersion:    v1alpha1.SchemeGroupVersion,
		MemoryVersion:     terminal.SchemeGroupVersion,
	})
	if err != nil {
		return nil, fmt.Errorf("storage codec: %w", err)
	}
	storage := &kvstore.RESTOptionsGetter{
		JetStream:               b.JetStream,
		Codec:                   codec,
		Prefix:                  "/registry",
		StreamPrefix:            "TERMINAL",
		SubjectPrefix:           "terminal-apiserver.objects",
		Replicas:                o.NATS.StreamReplicas,
		History:                 o.NATS.WatchHistory,
		HistoryBytes:            o.NATS.WatchHistoryBytes,
		DeleteCollectionWorkers: 1,
		EnableGarbageCollection: true,
	}
	// Ready only while NATS answers and the streams the replica writes have
	// a leader: without them it can neither store sessions nor relay
	// terminals.
	cfg.AddReadyzChecks(healthz.NamedCheck("nats", func(r *http.Request) error {
		return b.Ready(r.Context(), append(storage.Streams(), wire.IOStream, wire.LeaseStream)...)
	}))
	// Live while the connection may still come back (it retries forever).
	cfg.AddLivezChecks(healthz.NamedCheck("nats-connection", func(*http.Request) error { return b.Live() }))

	return &apiserver.Config{
		GenericConfig: cfg,
		KubeClient:    kubeClient,
		Limits: terminalsession.Limits{MaxSessionsPerUser: o.MaxSessionsPerUser, Ceilings: terminalsession.Ceilings{
			IdleTimeout: o.Sessions.MaxIdleTimeout, MaxDuration: o.Sessions.MaxMaxDuration, DetachGracePeriod: o.Sessions.MaxDetachGracePeriod}},
		AttachLimits:      o.Attach,
		AllowedOrigins:    o.AllowedOrigins,
		Relay:             &attach.Relay{Conn: b.Conn, JetStream: b.JetStream},
		RESTOptionsGetter: storage,
	}, nil
}
