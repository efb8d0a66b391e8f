// onebox's page script: plain JavaScript, no framework. The server renders
// what it knows at request time; this script sends the forms to the API
// with the session cookie, uploads with progress, follows the photo events
// and keeps the gallery in step. Errors from the API (problem+json) become
// sentences next to the field they concern.

const $ = (sel, root = document) => root.querySelector(sel);
const statusLine = $('#status');

// say announces a status update (the element is an aria-live region).
function say(text) {
  statusLine.textContent = text;
}

// APIError is an answer outside 2xx; problem is its problem+json body.
class APIError extends Error {
  constructor(status, problem, retryAfter) {
    super((problem && problem.detail) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
    this.retryAfter = retryAfter;
  }
}

// answer turns a finished exchange into its JSON body, or throws.
function answer(status, type, text, retryAfter) {
  let body = null;
  if (text && /json/.test(type || '')) {
    try {
      body = JSON.parse(text);
    } catch {
      body = null;
    }
  }
  if (status >= 200 && status < 300) return body;
  throw new APIError(status, body, retryAfter);
}

async function api(method, url, body) {
  const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await fetch(url, init);
  return answer(res.status, res.headers.get('Content-Type'), await res.text(), res.headers.get('Retry-After'));
}

// Errors as sentences.

function sentence(text) {
  const t = String(text || '').trim();
  if (!t) return '';
  const s = t[0].toUpperCase() + t.slice(1);
  return /[.!?…]$/.test(s) ? s : `${s}.`;
}

// A detail such as "must be 3 to 30 characters" needs its subject.
const predicate = /^(is|are|must|has|have|was|were|cannot|should|may)\b/;

function fieldSentence(root, el, field, detail) {
  let subject = el.dataset.subject;
  if (!subject) {
    const input = root.querySelector(`[name="${CSS.escape(field)}"]`);
    const label = input && input.labels && input.labels[0];
    subject = label ? label.firstChild.textContent.trim() : field.replace(/_/g, ' ');
  }
  return sentence(predicate.test(detail) ? `${subject} ${detail}` : detail);
}

// retryHint reads Retry-After (seconds): when to try again.
function retryHint(err) {
  const s = Number.parseInt(err.retryAfter, 10);
  if (!(s >= 0)) return { text: '', seconds: 0 };
  const at = new Date(Date.now() + s * 1000).toLocaleTimeString();
  return { text: ` Try again in ${s} second${s === 1 ? '' : 's'} (at ${at}).`, seconds: s };
}

function clearErrors(root) {
  for (const el of root.querySelectorAll('[data-error-for], [data-form-error]')) {
    el.textContent = '';
    el.hidden = true;
  }
  for (const el of root.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
}

// showError writes err next to the fields it names (errors[].pointer), or
// next to the form, and returns how many seconds to wait before retrying.
function showError(root, err) {
  clearErrors(root);
  const general = root.querySelector('[data-form-error]');
  const found = [];
  let wait = 0;
  if (!(err instanceof APIError)) {
    found.push([general, 'Could not reach the server. Check your connection and try again.']);
  } else {
    const hint = retryHint(err);
    wait = hint.seconds;
    if (err.status === 429) {
      found.push([general, `Too many requests.${hint.text}`]);
    } else {
      for (const fe of err.problem.errors || []) {
        const field = (fe.pointer || '').split('/')[1] || fe.parameter || fe.header || '';
        const el = field && root.querySelector(`[data-error-for="${CSS.escape(field)}"]`);
        if (el) {
          found.push([el, fieldSentence(root, el, field, fe.detail)]);
          const input = root.querySelector(`[name="${CSS.escape(field)}"]`);
          if (input) input.setAttribute('aria-invalid', 'true');
        } else {
          found.push([general, sentence(fe.detail)]);
        }
      }
      if (!found.length) {
        const detail = err.problem.detail || `The request failed (HTTP ${err.status})`;
        found.push([general, sentence(detail) + hint.text]);
      }
    }
  }
  for (const [el, text] of found) {
    if (!el) continue; // nowhere to put it: the status line says it
    el.textContent = el.textContent ? `${el.textContent} ${text}` : text;
    el.hidden = false;
  }
  // The status line says the outcome of this attempt, whichever it was:
  // left alone, it would still describe the one before.
  say(found.map(([, text]) => text).join(' '));
  const invalid = root.querySelector('[aria-invalid="true"]');
  if (invalid && !invalid.contains(document.activeElement)) {
    invalid.focus(); // its aria-describedby reads the error too
  }
  return wait;
}

// act runs fn with root's enabled buttons disabled; a failure is shown in
// root, and after a 429 the buttons stay disabled until Retry-After.
async function act(root, fn) {
  const buttons = [...root.querySelectorAll('button')].filter((b) => !b.disabled);
  for (const b of buttons) b.disabled = true;
  let wait = 0;
  say(''); // a new action: what the line said was about the last one
  try {
    clearErrors(root);
    await fn();
  } catch (err) {
    wait = showError(root, err);
  }
  const enable = () => {
    for (const b of buttons) b.disabled = false;
  };
  if (wait > 0) setTimeout(enable, wait * 1000);
  else enable();
}

function onSubmit(id, fn) {
  const form = document.getElementById(id);
  if (!form) return;
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    act(form, () => fn(new FormData(form)));
  });
}

// Signing up, in and out: the cookie changes, so the server renders anew.

onSubmit('signup-form', async (data) => {
  const body = { handle: data.get('handle'), password: data.get('password') };
  if (data.get('display_name')) body.display_name = data.get('display_name');
  await api('POST', '/v1/users', body);
  await api('POST', '/v1/sessions', { handle: body.handle, password: body.password });
  say('Welcome! Loading your page…');
  location.reload();
});

onSubmit('login-form', async (data) => {
  await api('POST', '/v1/sessions', { handle: data.get('handle'), password: data.get('password') });
  say('Logged in. Loading your page…');
  location.reload();
});

onSubmit('logout-form', async () => {
  try {
    await api('DELETE', '/v1/sessions/current');
  } catch (err) {
    if (!(err instanceof APIError && err.status === 401)) throw err; // already gone
  }
  location.reload();
});

onSubmit('profile-form', async (data) => {
  const me = await api('PATCH', '/v1/users/me', { display_name: data.get('display_name'), bio: data.get('bio') });
  $('#who-name').textContent = me.display_name;
  document.title = `${me.display_name} · onebox`;
  say('Profile saved.');
});

// Variants, as the server renders them (see web.go).

function widthVariants(vs) {
  return (vs || []).filter((v) => v.name.startsWith('w')).sort((a, b) => a.width - b.width);
}

function srcset(vs) {
  const seen = new Set();
  const parts = [];
  for (const v of widthVariants(vs)) {
    if (!seen.has(v.width)) {
      seen.add(v.width);
      parts.push(`${v.url} ${v.width}w`);
    }
  }
  return parts.join(', ');
}

function fallback(vs) {
  const ws = widthVariants(vs);
  return ws.find((v) => v.width >= 512) || ws[ws.length - 1];
}

function thumb(vs) {
  const t = (vs || []).find((v) => v.name === 'thumb');
  return t ? t.url : (fallback(vs) || {}).url;
}

function when(iso) {
  return `${new Date(iso).toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}

// The profile's avatar.

const profile = $('#profile');
let avatarID = profile ? profile.dataset.avatarId : '';

function showAvatar(me) {
  avatarID = me.avatar_id || '';
  const url = avatarID ? thumb(me.avatar) : '';
  const img = $('#avatar');
  if (url) img.src = url;
  img.hidden = !url;
  $('#no-avatar').hidden = Boolean(url);
  for (const li of document.querySelectorAll('#gallery .photo')) markAvatar(li);
}

// markAvatar shows whether li is the current avatar: its toggle pressed
// and its label shown.
function markAvatar(li) {
  const on = li.dataset.id === avatarID;
  li.querySelector('.avatar-toggle').setAttribute('aria-pressed', String(on));
  li.querySelector('.avatar-badge').hidden = !on;
}

// The gallery.

const gallery = $('#gallery');
const more = $('#more');
let events = null; // the EventSource of the photo events

function itemOf(id) {
  return gallery.querySelector(`.photo[data-id="${CSS.escape(id)}"]`);
}

function updateEmpty() {
  $('#gallery-empty').hidden = gallery.children.length > 0;
}

function fill(li, p) {
  li.dataset.id = p.id;
  li.dataset.status = p.status;
  const img = li.querySelector('img');
  img.id = `img-${p.id}`;
  if (p.created_at) img.alt = `Photo uploaded ${when(p.created_at)}`;
  const ready = p.status === 'ready';
  if (ready) {
    const v = fallback(p.variants);
    img.srcset = srcset(p.variants); // before src, so only one is fetched
    img.src = v.url;
    img.width = v.width;
    img.height = v.height;
  }
  const link = li.querySelector('.open');
  link.hash = `photo-${p.id}`; // the photo on the public page, once ready
  link.hidden = !ready;
  const state = { processing: 'Processing…', rejected: `Rejected: ${p.reason || 'not accepted'}` };
  li.querySelector('.photo-state').textContent = state[p.status] || '';
  const toggle = li.querySelector('.avatar-toggle');
  toggle.disabled = !ready;
  markAvatar(li);
  for (const b of li.querySelectorAll('button')) b.setAttribute('aria-describedby', img.id);
}

// Newer states win: an event can overtake the upload's own answer.
const rank = { processing: 0, ready: 1, rejected: 1 };

// upsert shows a photo's state, adding it in id (time) order. A photo
// older than the last one shown waits for "More photos" unless paging.
function upsert(p, paging = false) {
  let li = itemOf(p.id);
  if (p.status === 'deleted') {
    if (li) li.remove();
    if (p.id === avatarID) showAvatar({ avatar_id: null });
    updateEmpty();
    return;
  }
  if (li && rank[li.dataset.status] > rank[p.status]) return li;
  const before = li ? li.dataset.status : '';
  if (!li) {
    const next = [...gallery.children].find((el) => el.dataset.id < p.id);
    if (!next && !paging && !more.hidden) return;
    li = $('#photo-template').content.firstElementChild.cloneNode(true);
    gallery.insertBefore(li, next || null);
  }
  fill(li, p);
  updateEmpty();
  if (before === 'processing' && p.status === 'ready') say('Your photo is ready.');
  if (before === 'processing' && p.status === 'rejected') say(`Your photo was rejected: ${p.reason}`);
  return li;
}

if (gallery) {
  gallery.addEventListener('click', (ev) => {
    const button = ev.target.closest('button');
    if (!button) return;
    const li = button.closest('.photo');
    const id = li.dataset.id;
    if (button.classList.contains('avatar-toggle')) {
      const on = button.getAttribute('aria-pressed') !== 'true';
      act(li, async () => {
        showAvatar(await api('PATCH', '/v1/users/me', { avatar_id: on ? id : null }));
        say(on ? 'Your avatar is changed.' : 'Your avatar is removed.');
      });
    } else if (button.classList.contains('delete')) {
      if (!window.confirm('Delete this photo? This cannot be undone.')) return;
      act(li, async () => {
        await api('DELETE', `/v1/photos/${encodeURIComponent(id)}`);
        const next = li.nextElementSibling || li.previousElementSibling;
        upsert({ id, status: 'deleted' });
        (next ? next.querySelector('.delete') : $('#gallery-h')).focus();
        say('Photo deleted.');
      });
    }
  });

  more.addEventListener('click', () => {
    act($('#photos'), async () => {
      const q = new URLSearchParams({ limit: more.dataset.limit, cursor: more.dataset.cursor });
      const page = await api('GET', `/v1/users/me/photos?${q}`);
      const added = page.items.map((p) => upsert(p, true)).filter(Boolean);
      more.dataset.cursor = page.next_cursor || '';
      more.hidden = !page.next_cursor;
      if (more.hidden && added.length) added[0].querySelector('button:not(:disabled)').focus();
      say(`${added.length} more photo${added.length === 1 ? '' : 's'} shown.`);
    });
  });

  // Live updates: every photo event of this user, with the cookie.
  events = new EventSource('/v1/users/me/events');
  events.addEventListener('photo', (ev) => upsert(JSON.parse(ev.data)));
  events.addEventListener('error', () => {
    if (events.readyState === EventSource.CLOSED) say('Live updates stopped. Reload the page to see new changes.');
  });
  window.addEventListener('pagehide', () => events.close());
}

// Uploading: file picker or drag and drop, with progress (XMLHttpRequest,
// since fetch reports no upload progress).

const uploadForm = $('#upload-form');

function send(file, progress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', '/v1/photos');
    xhr.setRequestHeader('Accept', 'application/json');
    xhr.upload.addEventListener('progress', (ev) => {
      if (ev.lengthComputable) progress.value = Math.round((100 * ev.loaded) / ev.total);
    });
    xhr.addEventListener('load', () => {
      try {
        resolve(answer(xhr.status, xhr.getResponseHeader('Content-Type'), xhr.responseText, xhr.getResponseHeader('Retry-After')));
      } catch (err) {
        reject(err);
      }
    });
    xhr.addEventListener('error', () => reject(new TypeError('network error')));
    const body = new FormData();
    body.append('file', file, file.name);
    xhr.send(body);
  });
}

async function uploadOne(file) {
  const progress = $('#upload-progress');
  const max = Number(uploadForm.dataset.maxBytes);
  if (file.size > max) {
    throw new APIError(413, { detail: `the file must be at most ${uploadForm.dataset.maxText}` });
  }
  say(`Uploading ${file.name}…`);
  progress.value = 0;
  progress.hidden = false;
  try {
    const ans = await send(file, progress);
    const li = upsert({ id: ans.id, status: ans.status, variants: [], created_at: new Date().toISOString() }, true);
    // The photo's event may have come first: say the state it is in now.
    const now = { processing: 'Processing…', ready: 'It is ready.', rejected: 'It was rejected.' };
    say(`Uploaded ${file.name}. ${now[li.dataset.status] || ''}`.trim());
    // A closed stream would miss the photo's progress: ask once instead.
    if (events.readyState !== EventSource.OPEN) upsert(await api('GET', ans.status_url));
  } finally {
    progress.hidden = true;
  }
}

if (uploadForm) {
  const input = $('#upload-file');
  const drop = $('#drop');
  let queue = Promise.resolve();
  const upload = (files) => {
    for (const file of files) {
      queue = queue.then(() => act(uploadForm, () => uploadOne(file)));
    }
    queue = queue.then(() => {
      input.value = ''; // choosing the same file again is a change
    });
  };
  input.addEventListener('change', () => upload([...input.files]));
  uploadForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    upload([...input.files]);
  });
  for (const type of ['dragenter', 'dragover']) {
    drop.addEventListener(type, (ev) => {
      ev.preventDefault();
      drop.classList.add('over');
    });
  }
  drop.addEventListener('dragleave', (ev) => {
    if (!drop.contains(ev.relatedTarget)) drop.classList.remove('over');
  });
  drop.addEventListener('drop', (ev) => {
    ev.preventDefault();
    drop.classList.remove('over');
    upload([...ev.dataTransfer.files]);
  });
  // A file dropped beside the zone must not replace the page.
  for (const type of ['dragover', 'drop']) document.addEventListener(type, (ev) => ev.preventDefault());
}
