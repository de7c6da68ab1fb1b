package kvstore

import (
	"context"
	"errors"
	"sort"
	"strings"
	"sync"

	"k8s.io/klog/v2"
)

// errCompacted means the history needed to answer at a revision is gone; the
// store turns it into 410 Gone, exactly like etcd's "required revision has
// been compacted".
var errCompacted = errors.New("required revision has been compacted")

// errStopped ends watches that start while the server shuts down.
var errStopped = errors.New("storage is shutting down")

// record is a key's stored bytes and the stream sequence that wrote them.
type record struct {
	value  []byte
	modRev uint64
}

// event is one change applied to the index, in stream order. prev is the
// record it replaced (nil for a creation); value is nil for a deletion.
// Keeping prev is what lets a DELETED watch event carry the last object and
// lets an exact-revision list be rebuilt by undoing newer events.
type event struct {
	rev     uint64
	key     string
	value   []byte
	prev    *record
	deleted bool
}

// index is the in-memory view of one stream: current records plus a bounded
// window of recent events. One JetStream ordered consumer feeds it, so every
// replica converges on the same sequence of states.
type index struct {
	mu      sync.Mutex
	rev     uint64        // last stream sequence applied
	changed chan struct{} // closed and replaced whenever rev moves
	items   map[string]*record

	history      []*event // events with rev in (compacted, rev], oldest first
	historyBytes int      // the values the history alone keeps alive
	compacted    uint64
	maxHistory   int
	// maxHistoryBytes bounds the history in bytes too (0: no bound): with
	// objects of up to a MiB, a count alone could hold gigabytes.
	maxHistoryBytes int

	watchers map[*watchChan]struct{}
	stopped  bool // shutting down: watches end at once
}

func newIndex(maxHistory, maxHistoryBytes int) *index {
	return &index{
		changed:         make(chan struct{}),
		items:           map[string]*record{},
		maxHistory:      maxHistory,
		maxHistoryBytes: maxHistoryBytes,
		watchers:        map[*watchChan]struct{}{},
	}
}

// size is what an event in the history keeps alive: its value and the one
// it replaced (the current value is shared with the items, but only until
// the next change).
func (e *event) size() int {
	n := len(e.value) + len(e.key) + 64
	if e.prev != nil {
		n += len(e.prev.value)
	}
	return n
}

// apply records a put (value != nil) or a delete at rev. prev, when the
// message carries it, is the revision of the live value the write replaced;
// if the index holds another, this replica missed a change (its consumer
// fell further behind than the stream's per-key history), so the history
// it would serve is incomplete: it expires every watch and refuses older
// revisions, as etcd does after compaction, and clients relist. record says
// whether the change enters the watch history; the initial load of an
// existing stream does not, since what came before it is unknown.
func (i *index) apply(rev uint64, key string, value []byte, deleted bool, prev uint64, hasPrev, record bool) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if rev <= i.rev {
		return
	}
	old := i.items[key]
	var oldRev uint64
	if old != nil {
		oldRev = old.modRev
	}
	gap := record && hasPrev && prev != oldRev
	var ev *event
	switch {
	case deleted && old != nil:
		delete(i.items, key)
		ev = &event{rev: rev, key: key, prev: old, deleted: true}
	case !deleted:
		i.items[key] = newRecord(value, rev)
		ev = &event{rev: rev, key: key, value: value, prev: old}
	}
	i.rev = rev
	switch {
	case !record:
		i.compacted = rev
	case gap:
		klog.InfoS("Storage consumer missed a change; expiring watches so clients relist",
			"key", key, "revision", rev, "expectedPrevious", prev, "seenPrevious", oldRev)
		clear(i.history)
		i.history, i.historyBytes = i.history[:0], 0
		i.compacted = rev
		for w := range i.watchers {
			w.expire()
			delete(i.watchers, w)
		}
	case ev != nil:
		i.history = append(i.history, ev)
		i.historyBytes += ev.size()
		over, bytes := 0, i.historyBytes
		for over < len(i.history)-1 && (len(i.history)-over > i.maxHistory ||
			i.maxHistoryBytes > 0 && bytes > i.maxHistoryBytes) {
			bytes -= i.history[over].size()
			over++
		}
		i.forget(over)
		for w := range i.watchers {
			if w.matches(key) && rev > w.startRev {
				w.push(ev)
			}
		}
	}
	close(i.changed)
	i.changed = make(chan struct{})
}

// forget drops the n oldest events of the history (caller holds mu).
func (i *index) forget(n int) {
	if n == 0 {
		return
	}
	i.compacted = max(i.compacted, i.history[n-1].rev)
	for _, ev := range i.history[:n] {
		i.historyBytes -= ev.size()
	}
	clear(i.history[:n])
	i.history = i.history[n:]
}

// advance moves the revision past a message that is not a key.
func (i *index) advance(rev uint64) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if rev <= i.rev {
		return
	}
	i.rev = rev
	close(i.changed)
	i.changed = make(chan struct{})
}

func newRecord(value []byte, rev uint64) *record { return &record{value: value, modRev: rev} }

// compact forgets history up to and including rev (tests use it the way the
// etcd suite compacts etcd).
func (i *index) compact(rev uint64) {
	i.mu.Lock()
	defer i.mu.Unlock()
	n := sort.Search(len(i.history), func(k int) bool { return i.history[k].rev > rev })
	i.forget(n)
	if rev > i.compacted {
		i.compacted = rev
	}
}

func (i *index) compactedRev() uint64 {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.compacted
}

func (i *index) currentRev() uint64 {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.rev
}

// waitFor blocks until the index has applied rev.
func (i *index) waitFor(ctx context.Context, rev uint64) error {
	for {
		i.mu.Lock()
		cur, ch := i.rev, i.changed
		i.mu.Unlock()
		if cur >= rev {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

type keyRecord struct {
	key string
	*record
}

// list returns the records under prefix (or the single key when !recursive)
// as they were at rev (0: now), sorted by key, and the revision answered.
func (i *index) list(key string, recursive bool, rev uint64) ([]keyRecord, uint64, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if rev == 0 || rev >= i.rev {
		rev = i.rev
	} else if rev < i.compacted {
		return nil, 0, errCompacted
	}
	match := func(k string) bool { return k == key || recursive && strings.HasPrefix(k, key) }
	var out []keyRecord
	if !recursive {
		if r, ok := i.items[key]; ok {
			out = append(out, keyRecord{key, r})
		}
	} else {
		for k, r := range i.items {
			if match(k) {
				out = append(out, keyRecord{k, r})
			}
		}
	}
	if rev < i.rev {
		// Undo the newer events, newest first, to see the keys as they were.
		state := make(map[string]*record, len(out))
		for _, kr := range out {
			state[kr.key] = kr.record
		}
		for k := len(i.history) - 1; k >= 0 && i.history[k].rev > rev; k-- {
			ev := i.history[k]
			if !match(ev.key) {
				continue
			}
			if ev.prev == nil {
				delete(state, ev.key)
			} else {
				state[ev.key] = ev.prev
			}
		}
		out = out[:0]
		for k, r := range state {
			out = append(out, keyRecord{k, r})
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].key < out[b].key })
	return out, rev, nil
}

// register adds w to the watchers. With initial set, it also returns the
// current records w must first report as ADDED, and w starts after the
// current revision; otherwise w starts after w.startRev and gets the
// retained events since then.
func (i *index) register(w *watchChan, initial bool) ([]keyRecord, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.stopped {
		return nil, errStopped
	}
	var snapshot []keyRecord
	if initial {
		for k, r := range i.items {
			if w.matches(k) {
				snapshot = append(snapshot, keyRecord{k, r})
			}
		}
		sort.Slice(snapshot, func(a, b int) bool { return snapshot[a].key < snapshot[b].key })
		w.startRev = i.rev
	} else {
		if w.startRev < i.compacted {
			return nil, errCompacted
		}
		start := sort.Search(len(i.history), func(k int) bool { return i.history[k].rev > w.startRev })
		for _, ev := range i.history[start:] {
			if w.matches(ev.key) {
				w.push(ev)
			}
		}
	}
	i.watchers[w] = struct{}{}
	return snapshot, nil
}

// stopWatches ends every watch; clients reconnect, to another replica if
// this one is going away.
func (i *index) stopWatches() {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.stopped = true
	for w := range i.watchers {
		w.cancel()
		delete(i.watchers, w)
	}
}

func (i *index) unregister(w *watchChan) {
	i.mu.Lock()
	defer i.mu.Unlock()
	delete(i.watchers, w)
}

// stats counts the keys under prefix and their stored size in bytes.
func (i *index) stats(prefix string) (count, size int64) {
	i.mu.Lock()
	defer i.mu.Unlock()
	for k, r := range i.items {
		if strings.HasPrefix(k, prefix) {
			count++
			size += int64(len(r.value))
		}
	}
	return count, size
}
