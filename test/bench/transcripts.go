package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/meshery/terminal-apiserver/pkg/wire"
	"github.com/meshery/terminal-apiserver/test/framework"
)

var (
	transcriptPairs = flag.Int("transcript-pairs", 4, "pairs of rounds, transcripts on and off, for the recording cost (0: skip)")
	transcriptMiB   = flag.Int("transcript-bulk-mib", 64, "MiB of output (base64 text) per round of the recording cost")
)

// transcriptRound is one round's figures through the attach subresource.
type transcriptRound struct {
	echo       []time.Duration
	throughput float64
	// cpu is the server's CPU time per MiB of the bulk output: what the
	// throughput figure, shared with everything else on the machine,
	// cannot show alone.
	cpu      time.Duration
	recorded float64 // transcript bytes the server wrote during the round
	dropped  float64
}

// transcriptCost measures what recording costs the shell: the same echo and
// bulk output through attach, on a server with transcripts on and on one
// with them off (restarted between rounds, in alternating order, so that the
// machine's drift touches both alike). "On" is the server as make up runs
// it (redaction included), with room for the whole bulk output, so that
// every byte of it is recorded rather than the first --transcript-max-bytes.
func (e *env) transcriptCost(ctx context.Context) (on, off []transcriptRound, err error) {
	// The server always ends as make bench started it.
	defer func() {
		if rerr := e.restartServer(ctx, ""); rerr != nil && err == nil {
			err = rerr
		}
	}()
	room := int64(*transcriptMiB+16) << 20
	modes := map[bool]string{
		true:  fmt.Sprintf("--transcript-max-bytes=%d --transcript-storage-bytes=%d", room, 2*room),
		false: "--transcripts=false",
	}
	for i := range *transcriptPairs {
		for _, recording := range []bool{i%2 == 0, i%2 != 0} {
			if err := e.restartServer(ctx, modes[recording]); err != nil {
				return nil, nil, err
			}
			r, err := e.transcriptRound(ctx, recording)
			if err != nil {
				return nil, nil, fmt.Errorf("transcripts %v: %w", map[bool]string{true: "on", false: "off"}[recording], err)
			}
			if recording {
				if r.recorded < float64(*transcriptMiB<<20) || r.dropped > 0 {
					return nil, nil, fmt.Errorf("transcripts on recorded %.0f bytes and dropped %.0f of %d MiB of output",
						r.recorded, r.dropped, *transcriptMiB)
				}
				on = append(on, r)
			} else {
				if r.recorded > 0 {
					return nil, nil, fmt.Errorf("transcripts off recorded %.0f bytes", r.recorded)
				}
				off = append(off, r)
			}
		}
	}
	return on, off, nil
}

func (e *env) transcriptRound(ctx context.Context, recording bool) (transcriptRound, error) {
	var r transcriptRound
	before, err := serverMetrics()
	if err != nil {
		return r, err
	}
	s, deleteFn, err := e.create(ctx, []string{"cat"})
	if err != nil {
		return r, err
	}
	defer deleteFn()
	attach, err := e.attacher(s.Name)
	if err != nil {
		return r, err
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	typeKey := typer(sctx, attach)
	// The first keys after a restart wait for the process to start and
	// find cold connections and caches: not what recording costs.
	const warmUp = 20
	for i := range *nEcho + warmUp {
		key := []byte{byte('a' + i%26)}
		start := time.Now()
		if err := typeKey(key); err != nil {
			return r, fmt.Errorf("echo: %w", err)
		}
		if i >= warmUp {
			r.echo = append(r.echo, time.Since(start))
		}
	}
	cancel()

	b, deleteBulk, err := e.create(ctx, textScript(*transcriptMiB))
	if err != nil {
		return r, err
	}
	defer deleteBulk()
	bulk, err := e.attacher(b.Name)
	if err != nil {
		return r, err
	}
	bctx, bcancel := context.WithTimeout(ctx, 5*time.Minute)
	defer bcancel()
	cpuBefore, err := serverMetrics()
	if err != nil {
		return r, err
	}
	if r.throughput, err = readBulk(bctx, bulk); err != nil {
		return r, fmt.Errorf("bulk output: %w", err)
	}
	// The CPU is read once storage has settled (the transcript stream no
	// longer grows, in both modes alike): recording's cost is the server's
	// whether or not the reader waits for it.
	if err := e.transcriptsSettled(ctx); err != nil {
		return r, err
	}
	after, err := serverMetrics()
	if err != nil {
		return r, err
	}
	r.recorded = after["terminal_transcript_bytes_written_total"] - before["terminal_transcript_bytes_written_total"]
	r.dropped = after["terminal_transcript_bytes_dropped_total"] - before["terminal_transcript_bytes_dropped_total"]
	cpu := after["process_cpu_seconds_total"] - cpuBefore["process_cpu_seconds_total"]
	r.cpu = time.Duration(cpu / float64(*transcriptMiB) * float64(time.Second))
	return r, nil
}

// transcriptsSettled polls the transcript stream until two readings a
// tick and a half apart agree (the recorder flushes at each bridge tick).
func (e *env) transcriptsSettled(ctx context.Context) error {
	var last uint64
	for i := 0; ; i++ {
		st, err := e.js.Stream(ctx, wire.TranscriptStream)
		if err != nil {
			return err
		}
		info, err := st.Info(ctx)
		if err != nil {
			return err
		}
		if i > 0 && info.State.Bytes == last {
			return nil
		}
		if i == 60 {
			return fmt.Errorf("the transcript stream still grows after a minute and a half")
		}
		last = info.State.Bytes
		time.Sleep(1500 * time.Millisecond)
	}
}

// textScript says it is ready, then writes about mib MiB of text once a
// line arrives: random bytes in base64, lines of 76 characters. Unlike
// bulkScript's one repeated byte it leaves compression and the redactor's
// literal search little to gain, as varied terminal output would.
func textScript(mib int) []string {
	return []string{"bash", "-c", fmt.Sprintf("echo READY; read go; head -c %d /dev/urandom | base64; echo; echo BULK-END", mib<<20*3/4)}
}

// restartServer restarts terminal-apiserver on the local control plane with
// make bench's flags and extra, and reconnects to its embedded NATS.
func (e *env) restartServer(ctx context.Context, extra string) error {
	cmd := exec.CommandContext(ctx, "hack/local-up.sh")
	cmd.Dir = os.Getenv("REPO_ROOT")
	cmd.Env = append(os.Environ(), "TERMINAL_APISERVER_RESTART=1",
		"TERMINAL_APISERVER_EXTRA_ARGS="+strings.TrimSpace(os.Getenv("BENCH_SERVER_ARGS")+" "+extra))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("restarting terminal-apiserver with %q: %w\n%s", extra, err, out)
	}
	e.nc.Close()
	var err error
	e.nc, e.js, err = framework.NATS()
	return err
}
