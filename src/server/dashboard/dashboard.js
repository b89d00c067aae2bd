// The presence dashboard: one WebSocket to /ws of this host, the dispatcher's token as its
// subprotocol; the view is the last PRESENCE_SNAPSHOT changed by the PRESENCE_UPDATEs (newer
// versions only) and PRESENCE_ACTIVITYs after it (protocol/PROTOCOL.md section 4). Every text
// from the router is written with textContent, never parsed as HTML. Only the rows in the scroll
// window exist in the document, so ten thousand users stay cheap.
(function () {
  'use strict';

  const TOKEN_KEY = 'presence-dashboard-token';
  const ROW_HEIGHT = 32;
  const OVERSCAN = 8;
  const BACKOFF_MS = [500, 1000, 2000, 4000, 8000, 15000];
  const MEMBERS_PAGE = 1000;

  const $ = (id) => document.getElementById(id);
  const el = {
    state: $('state'), closeReason: $('close-reason'), online: $('online-count'),
    onAir: $('onair-count'), shown: $('shown-count'), who: $('who'), error: $('error'),
    signOut: $('sign-out'), login: $('login'), tokenInput: $('token-input'), main: $('main'),
    search: $('search'), group: $('group'), groupNote: $('group-note'), list: $('list'),
    spacer: $('spacer'), empty: $('empty'),
  };

  // The view: user id -> {userId, status, lastSeen, deviceId, version, availability,
  // statusText, onAir: {channelType, to, since} | null}.
  let users = new Map();
  let token = null;
  let claims = {};
  let socket = null;
  let attempt = 0;
  let retryTimer = null;
  let snapshots = 0;
  let sortKey = 'user';
  let sortDir = 1;
  let members = null; // the selected group's members (a Set), null for "all"
  let membersFor = '';
  let membersTimer = null;
  let rows = []; // the filtered, sorted users
  let dirty = true;
  let frameRequested = false;

  // ---- the token -------------------------------------------------------------------------

  /** The JWT's payload, for display only (the router verifies it). */
  function readClaims(jwt) {
    try {
      const part = jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      const padded = part + '='.repeat((4 - (part.length % 4)) % 4);
      const bin = atob(padded);
      const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
      const payload = JSON.parse(new TextDecoder().decode(bytes));
      return payload && typeof payload === 'object' ? payload : {};
    } catch (e) {
      return {};
    }
  }

  /** Takes `?token=` out of the address into sessionStorage, and returns the token held. */
  function takeToken() {
    const url = new URL(window.location.href);
    const given = url.searchParams.get('token');
    if (given !== null) {
      url.searchParams.delete('token');
      window.history.replaceState(null, '', url.pathname + url.search + url.hash);
      if (given) sessionStorage.setItem(TOKEN_KEY, given);
    }
    return sessionStorage.getItem(TOKEN_KEY);
  }

  function groupsOfToken() {
    const ids = claims.channelIds;
    return Array.isArray(ids) ? ids.filter((g) => typeof g === 'string' || typeof g === 'number').map(String) : null;
  }

  function showIdentity() {
    const user = ['uid', 'user_id', 'userId', 'sub', 'id'].map((k) => claims[k]).find((v) => v !== undefined);
    const parts = [`as ${user === undefined ? '?' : String(user)}`];
    if (claims.role !== undefined) parts.push(`role ${String(claims.role)}`);
    if (claims.tenant !== undefined) parts.push(`tenant ${String(claims.tenant)}`);
    if (typeof claims.exp === 'number') parts.push(`token expires ${new Date(claims.exp * 1000).toLocaleString()}`);
    el.who.textContent = parts.join(' · ');
    const groups = groupsOfToken();
    el.group.replaceChildren(option('', 'all'));
    if (groups) for (const g of groups) el.group.append(option(g, g));
    el.group.disabled = !groups || groups.length === 0;
    el.group.value = '';
    selectGroup('');
  }

  function option(value, label) {
    const o = document.createElement('option');
    o.value = value;
    o.textContent = label;
    return o;
  }

  function start(jwt) {
    token = jwt;
    claims = readClaims(jwt);
    el.login.hidden = true;
    el.main.hidden = false;
    el.signOut.hidden = false;
    showIdentity();
    connect();
  }

  function signOut() {
    sessionStorage.removeItem(TOKEN_KEY);
    token = null;
    clearTimeout(retryTimer);
    if (socket) {
      const s = socket;
      socket = null;
      s.close(1000, 'signed out');
    }
    users = new Map();
    changed();
    setState('signed-out', 'signed out');
    el.main.hidden = true;
    el.signOut.hidden = true;
    el.login.hidden = false;
  }

  // ---- the connection --------------------------------------------------------------------

  function setState(state, text) {
    el.state.dataset.state = state;
    el.state.textContent = text;
  }

  function connect() {
    clearTimeout(retryTimer);
    const scheme = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
    setState(attempt === 0 ? 'connecting' : 'reconnecting', attempt === 0 ? 'connecting' : `reconnecting (attempt ${attempt})`);
    let ws;
    try {
      ws = new WebSocket(`${scheme}//${window.location.host}/ws`, [token]);
    } catch (e) {
      el.closeReason.textContent = `cannot connect: ${e.message}`;
      return retry();
    }
    ws.binaryType = 'arraybuffer';
    socket = ws;
    ws.onmessage = (event) => {
      if (socket === ws) receive(event.data);
    };
    ws.onclose = (event) => {
      if (socket !== ws) return;
      socket = null;
      const why = event.reason ? `${event.code} ${event.reason}` : String(event.code);
      el.closeReason.textContent = `last close: ${why}${event.code === 1006 ? ' (connection lost or refused)' : ''} at ${new Date().toLocaleTimeString()}`;
      retry();
    };
  }

  function retry() {
    if (token === null) return;
    const base = BACKOFF_MS[Math.min(attempt, BACKOFF_MS.length - 1)];
    const delay = base / 2 + Math.random() * (base / 2);
    attempt += 1;
    setState('reconnecting', `reconnecting in ${(delay / 1000).toFixed(1)} s`);
    retryTimer = setTimeout(connect, delay);
  }

  function receive(data) {
    let frame;
    try {
      if (!(data instanceof ArrayBuffer)) throw new Error('a text message');
      frame = PresenceMsgpack.decode(data);
    } catch (e) {
      el.error.textContent = `unreadable frame: ${e.message}`;
      return;
    }
    if (!Array.isArray(frame) || frame.length < 5 || frame[0] !== 0) return;
    const body = frame[4];
    if (!body || typeof body !== 'object') return;
    switch (frame[1]) {
      case 32: return snapshot(body);
      case 31: return update(body);
      case 35: return activity(body);
      case 33:
        el.error.textContent = `router: ${String(body.code)} ${String(body.message)}`;
        return undefined;
      default: return undefined;
    }
  }

  // ---- the view --------------------------------------------------------------------------

  const text = (v) => (typeof v === 'string' ? v : undefined);
  const num = (v) => (typeof v === 'number' ? v : typeof v === 'bigint' ? Number(v) : 0);

  function onAirOf(o) {
    if (!o || typeof o !== 'object') return null;
    return { channelType: num(o.channelType), to: o.to === undefined ? undefined : String(o.to), since: num(o.since) };
  }

  /** Every snapshot replaces the whole view. */
  function snapshot(body) {
    const next = new Map();
    for (const u of Array.isArray(body.users) ? body.users : []) {
      if (!u || typeof u.userId !== 'string') continue;
      next.set(u.userId, {
        userId: u.userId, status: text(u.status) || 'online', lastSeen: num(u.lastSeen),
        deviceId: text(u.deviceId), version: num(u.version), availability: text(u.availability),
        statusText: text(u.statusText), onAir: onAirOf(u.onAir),
      });
    }
    users = next;
    attempt = 0;
    snapshots += 1;
    el.state.dataset.snapshots = String(snapshots);
    setState('live', 'live');
    el.error.textContent = '';
    refreshMembers(0);
    changed();
  }

  /** Applied only when newer than the version held (none held counts as 0). */
  function update(u) {
    if (typeof u.userId !== 'string') return;
    const held = users.get(u.userId);
    const version = num(u.version);
    if (version <= (held ? held.version : 0)) return;
    const online = u.status === 'online';
    users.set(u.userId, {
      userId: u.userId, status: online ? 'online' : 'offline', lastSeen: num(u.lastSeen),
      deviceId: text(u.deviceId), version, availability: text(u.availability),
      statusText: text(u.statusText), onAir: online && held ? held.onAir : null,
    });
    if (online && !held && members) refreshMembers(1000);
    changed();
  }

  function activity(a) {
    if (typeof a.userId !== 'string') return;
    const held = users.get(a.userId);
    if (!held) return;
    const talk = onAirOf(a);
    if (a.onAir === true) {
      held.onAir = talk;
    } else if (held.onAir && held.onAir.channelType === talk.channelType && held.onAir.since === talk.since) {
      held.onAir = null;
    }
    changed();
  }

  // ---- the group filter ------------------------------------------------------------------

  function selectGroup(group) {
    membersFor = group;
    members = group ? new Set() : null;
    el.list.dataset.group = group ? '' : '*';
    el.groupNote.textContent = group ? 'loading members…' : '';
    if (group) refreshMembers(0);
    changed();
  }

  /** Reads the selected group's members from `GET /api/presence?group=`, page by page. */
  function refreshMembers(delay) {
    if (!membersFor || token === null) return;
    clearTimeout(membersTimer);
    membersTimer = setTimeout(async () => {
      const group = membersFor;
      const found = new Set();
      let after = null;
      try {
        for (;;) {
          const query = new URLSearchParams({ group, limit: String(MEMBERS_PAGE) });
          if (after !== null) query.set('after', after);
          const reply = await fetch(`/api/presence?${query}`, {
            headers: { Authorization: `Bearer ${token}` }, cache: 'no-store',
          });
          if (!reply.ok) throw new Error(`HTTP ${reply.status}`);
          const page = await reply.json();
          for (const u of page.users || []) if (u && u.userId !== undefined) found.add(String(u.userId));
          if (page.next === null || page.next === undefined) break;
          after = String(page.next);
        }
      } catch (e) {
        if (group === membersFor) el.groupNote.textContent = `cannot read the members of ${group}: ${e.message}`;
        return;
      }
      if (group !== membersFor) return;
      // Members who went offline since stay listed (the API lists online members only).
      if (members) for (const id of members) if (users.get(id)?.status === 'offline') found.add(id);
      members = found;
      el.groupNote.textContent = `${found.size} online member${found.size === 1 ? '' : 's'} of ${group}`;
      el.list.dataset.group = group;
      changed();
    }, delay);
  }

  // ---- rendering -------------------------------------------------------------------------

  function changed() {
    dirty = true;
    schedule();
  }

  function schedule() {
    if (frameRequested) return;
    frameRequested = true;
    requestAnimationFrame(() => {
      frameRequested = false;
      render();
    });
  }

  const compareIds = (a, b) => (a.userId < b.userId ? -1 : a.userId > b.userId ? 1 : 0);
  const comparators = {
    user: (a, b) => compareIds(a, b),
    status: (a, b) => (a.status === b.status ? 0 : a.status === 'online' ? -1 : 1) || compareIds(a, b),
    lastSeen: (a, b) => b.lastSeen - a.lastSeen || compareIds(a, b),
  };

  function recompute() {
    const needle = el.search.value.trim().toLowerCase();
    const list = [];
    let online = 0;
    let onAir = 0;
    for (const u of users.values()) {
      if (u.status === 'online') online += 1;
      if (u.onAir && u.status === 'online') onAir += 1;
      if (members && !members.has(u.userId)) continue;
      if (needle && !u.userId.toLowerCase().includes(needle)
        && !(u.deviceId && u.deviceId.toLowerCase().includes(needle))) continue;
      list.push(u);
    }
    const compare = comparators[sortKey];
    list.sort((a, b) => sortDir * compare(a, b));
    rows = list;
    el.online.textContent = String(online);
    el.onAir.textContent = String(onAir);
    el.shown.textContent = String(list.length);
    el.empty.hidden = list.length > 0;
    el.spacer.style.height = `${list.length * ROW_HEIGHT}px`;
  }

  function ago(ms) {
    if (!ms) return '';
    const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
    if (s < 5) return 'just now';
    if (s < 60) return `${s} s ago`;
    const m = Math.round(s / 60);
    if (m < 60) return `${m} min ago`;
    const h = Math.round(m / 60);
    if (h < 48) return `${h} h ago`;
    return `${Math.round(h / 24)} days ago`;
  }

  function onAirText(u) {
    if (!u.onAir || u.status !== 'online') return '';
    const where = u.onAir.channelType === 0 ? `group ${u.onAir.to === undefined ? '?' : u.onAir.to}` : 'private';
    return `${where} · since ${new Date(u.onAir.since).toLocaleTimeString()}`;
  }

  const CELLS = ['user', 'status', 'availability', 'statusText', 'device', 'lastSeen', 'onair'];
  const pool = [];

  function rowElement(i) {
    while (pool.length <= i) {
      const row = document.createElement('div');
      row.className = 'row';
      row.setAttribute('role', 'row');
      for (const c of CELLS) {
        const cell = document.createElement('span');
        cell.className = c === 'onair' ? 'onair' : c;
        row.append(cell);
      }
      el.spacer.append(row);
      pool.push(row);
    }
    return pool[i];
  }

  function render() {
    if (dirty) {
      dirty = false;
      recompute();
    }
    const height = el.list.clientHeight || window.innerHeight;
    // The list may have just shrunk under a scroll position far down it (a search, a filter).
    const top = Math.min(el.list.scrollTop, Math.max(0, rows.length * ROW_HEIGHT - height));
    const first = Math.max(0, Math.floor(top / ROW_HEIGHT) - OVERSCAN);
    const last = Math.min(rows.length, Math.ceil((top + height) / ROW_HEIGHT) + OVERSCAN);
    let used = 0;
    for (let i = first; i < last; i++, used++) {
      const u = rows[i];
      const row = rowElement(used);
      row.hidden = false;
      row.style.top = `${i * ROW_HEIGHT}px`;
      row.dataset.user = u.userId;
      row.dataset.status = u.status;
      const c = row.children;
      c[0].textContent = u.userId;
      c[0].title = u.userId;
      c[1].textContent = u.status;
      c[1].dataset.status = u.status;
      c[2].textContent = u.availability || '';
      c[3].textContent = u.statusText || '';
      c[4].textContent = u.deviceId || '';
      c[4].title = u.deviceId || '';
      c[5].textContent = `${u.status === 'online' ? 'seen' : 'last seen'} ${ago(u.lastSeen)}`;
      c[6].textContent = onAirText(u);
    }
    for (let i = used; i < pool.length; i++) {
      pool[i].hidden = true;
      delete pool[i].dataset.user;
    }
  }

  // ---- controls --------------------------------------------------------------------------

  el.list.addEventListener('scroll', schedule, { passive: true });
  window.addEventListener('resize', schedule);
  // A new query starts at the top of its results.
  const newQuery = () => {
    el.list.scrollTop = 0;
    changed();
  };
  el.search.addEventListener('input', newQuery);
  el.group.addEventListener('change', () => selectGroup(el.group.value));
  for (const button of document.querySelectorAll('.cols button[data-sort]')) {
    button.addEventListener('click', () => {
      const key = button.dataset.sort;
      sortDir = key === sortKey ? -sortDir : 1;
      sortKey = key;
      for (const b of document.querySelectorAll('.cols button[data-sort]')) b.removeAttribute('aria-sort');
      button.setAttribute('aria-sort', sortDir === 1 ? 'ascending' : 'descending');
      changed();
    });
  }
  el.login.addEventListener('submit', (event) => {
    event.preventDefault();
    const jwt = el.tokenInput.value.trim();
    el.tokenInput.value = '';
    if (!jwt) return;
    sessionStorage.setItem(TOKEN_KEY, jwt);
    start(jwt);
  });
  el.signOut.addEventListener('click', signOut);
  // "3 min ago" moves on by itself.
  setInterval(schedule, 5000);

  const held = takeToken();
  if (held) start(held);
  else {
    el.login.hidden = false;
    el.tokenInput.focus();
  }
})();
