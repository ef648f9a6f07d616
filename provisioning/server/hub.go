package server

import "sync"

// hub wakes the long-polls of a device when it gets a new bundle.
type hub struct {
	mu sync.Mutex
	ch map[string]chan struct{}
}

// wait returns a channel closed at the next notify for id. Take it before reading the store,
// so that a bundle stored in between is not missed.
func (h *hub) wait(id string) <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ch == nil {
		h.ch = map[string]chan struct{}{}
	}
	c := h.ch[id]
	if c == nil {
		c = make(chan struct{})
		h.ch[id] = c
	}
	return c
}

func (h *hub) notify(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if c := h.ch[id]; c != nil {
		close(c)
		delete(h.ch, id)
	}
}
