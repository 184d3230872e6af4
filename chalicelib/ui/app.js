/* Stagecoach dashboard: overview, stack and release pages over the JSON API (the same as the CLI's).
 * Vanilla JS, no build step. Pages poll every few seconds and replace only the regions whose content
 * changed; approval forms are created once per waiting stage, so a comment being typed survives refreshes.
 */
(function () {
  'use strict';

  const REFRESH_MS = Number(new URLSearchParams(location.search).get('refresh_ms')) || 3000;
  const METRICS_EVERY = 10; // refreshes between two metrics reads
  const BASE = document.body.dataset.base || ''; // where the API is mounted (API Gateway: /api)
  const ACTIVE = ['PENDING', 'RUNNING'];
  const CREDENTIALS = 'stagecoach.credentials';
  const main = document.getElementById('main');
  const live = document.getElementById('live');
  const page = document.body.dataset.page;
  const pageId = document.body.dataset.id;
  const releaseCache = new Map(); // release id → release view (terminal ones never change)

  // ---------- small helpers ----------
  function esc(value) {
    return String(value === null || value === undefined ? '' : value)
      .replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
      .replace(/"/g, '&quot;').replace(/'/g, '&#39;');
  }

  function statusClass(status) {
    switch (status) {
      case 'SUCCEEDED': return 's-ok';
      case 'RUNNING': case 'DEPLOYING': case 'PREPARING': case 'DRAINING': return 's-run';
      case 'AWAITING_APPROVAL': case 'WAITING': case 'PENDING': case 'HELD': return 's-wait';
      case 'FAILED': case 'BLOCKED': case 'TIMED_OUT': return 's-fail';
      default: return 's-off';
    }
  }

  function badge(status) {
    const text = status ? status.replace(/_/g, ' ').toLowerCase() : 'unknown';
    return `<span class="badge ${statusClass(status)}" data-status="${esc(status)}">${esc(text)}</span>`;
  }

  function short(sha) { return sha ? String(sha).slice(0, 7) : '—'; }
  function firstLine(text) { return String(text || '').split('\n')[0]; }

  function age(iso) {
    if (!iso) return '';
    const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    if (seconds < 60) return `${Math.floor(seconds)}s ago`;
    if (seconds < 3600) return `${Math.floor(seconds / 60)}m ago`;
    if (seconds < 86400) return `${Math.floor(seconds / 3600)}h ago`;
    return `${Math.floor(seconds / 86400)}d ago`;
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return '—';
    if (seconds < 60) return `${Math.round(seconds)}s`;
    if (seconds < 3600) return `${Math.floor(seconds / 60)}m ${Math.round(seconds % 60)}s`;
    if (seconds < 86400) return `${Math.floor(seconds / 3600)}h ${Math.round((seconds % 3600) / 60)}m`;
    return `${(seconds / 86400).toFixed(1)}d`;
  }

  /* Relative times are filled in by tickAges(), outside the diffed HTML: a region re-renders only when
   * its data changed, never because a clock moved (a re-render under the pointer would eat a click). */
  function timeTag(iso) {
    return iso ? `<time datetime="${esc(iso)}" title="${esc(iso)}"></time>` : '';
  }

  function tickAges() {
    for (const node of document.querySelectorAll('time[datetime]')) {
      const text = age(node.dateTime);
      if (node.textContent !== text) node.textContent = text;
    }
  }

  const link = {
    home: () => `${BASE}/`,
    stack: (id) => `${BASE}/ui/stacks/${encodeURIComponent(id)}`,
    release: (id) => `${BASE}/ui/releases/${encodeURIComponent(id)}`,
  };

  function onAws() {
    return /\.amazonaws\.com(\.cn)?$/.test(location.hostname);
  }

  /* Replace a region's HTML only when it changed (keeps focus and scroll where nothing changed). */
  function region(parent, key, html) {
    let node = parent.querySelector(`:scope > [data-region="${key}"]`);
    if (!node) {
      node = document.createElement('section');
      node.dataset.region = key;
      parent.appendChild(node);
    }
    if (node.dataset.html !== html) {
      node.innerHTML = html;
      node.dataset.html = html;
    }
    return node;
  }

  // ---------- API ----------
  class ApiError extends Error {
    constructor(status, code, message) { super(message); this.status = status; this.code = code; }
  }

  function credentials() {
    try { return JSON.parse(sessionStorage.getItem(CREDENTIALS) || 'null'); } catch (e) { return null; }
  }

  function query(params) {
    const pairs = Object.entries(params || {}).filter(([, v]) => v !== undefined && v !== null && v !== '');
    if (!pairs.length) return '';
    return '?' + pairs.map(([k, v]) => `${StagecoachSigV4.encodeParam(k)}=${StagecoachSigV4.encodeParam(v)}`).join('&');
  }

  async function api(method, path, body, params) {
    const url = new URL(BASE + path + query(params), location.href).toString();
    const headers = { Accept: 'application/json' };
    let payload;
    if (body !== undefined) {
      payload = JSON.stringify(body);
      headers['Content-Type'] = 'application/json';
    }
    const creds = credentials();
    if (creds) {
      const signedHeaders = payload === undefined ? {} : { 'Content-Type': headers['Content-Type'] };
      const signed = await StagecoachSigV4.sign({
        method, url, headers: signedHeaders, body: payload || '',
        accessKeyId: creds.key, secretAccessKey: creds.secret, sessionToken: creds.token, region: creds.region,
      });
      Object.assign(headers, signed);
    }
    const response = await fetch(url, { method, headers, body: payload, cache: 'no-store' });
    const text = await response.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
    if (!response.ok) {
      if (response.status === 403 || response.status === 401) {
        document.getElementById('sign-in-button').hidden = false;
      }
      throw new ApiError(response.status, (data && data.code) || `http_${response.status}`,
        (data && data.message) || text || response.statusText);
    }
    return data;
  }

  async function releaseView(id, fresh) {
    const cached = releaseCache.get(id);
    if (cached && !fresh && !ACTIVE.includes(cached.status)) return cached;
    const found = await api('GET', `/releases/${encodeURIComponent(id)}`);
    releaseCache.set(id, found);
    return found;
  }

  // ---------- dialogs ----------
  function confirmAction(title, bodyHtml, okLabel) {
    const dialog = document.getElementById('confirm-dialog');
    document.getElementById('confirm-title').textContent = title;
    document.getElementById('confirm-body').innerHTML = bodyHtml;
    document.getElementById('confirm-ok').textContent = okLabel || 'Confirm';
    dialog.returnValue = '';
    return new Promise((resolve) => {
      dialog.addEventListener('close', () => {
        if (dialog.returnValue !== 'confirm') return resolve(null);
        const values = {};
        for (const field of dialog.querySelectorAll('#confirm-body [name]')) values[field.name] = field.value;
        resolve(values);
      }, { once: true });
      dialog.showModal();
    });
  }

  function setupSignIn() {
    const button = document.getElementById('sign-in-button');
    const dialog = document.getElementById('sign-in-dialog');
    if (credentials()) {
      button.hidden = false;
      button.textContent = 'Sign out';
    }
    button.addEventListener('click', () => {
      if (credentials()) {
        sessionStorage.removeItem(CREDENTIALS);
        button.textContent = 'Sign in';
        return;
      }
      dialog.showModal();
    });
    dialog.addEventListener('close', () => {
      if (dialog.returnValue !== 'save') return;
      const form = document.getElementById('sign-in-form');
      sessionStorage.setItem(CREDENTIALS, JSON.stringify({
        key: form.key.value.trim(), secret: form.secret.value.trim(),
        token: form.token.value.trim() || undefined, region: form.region.value.trim() || undefined,
      }));
      form.secret.value = '';
      form.token.value = '';
      button.textContent = 'Sign out';
      refresh();
    });
  }

  function flash(message, isError) {
    const box = region(main, 'flash', `<div class="${isError ? 'error-box' : 'notice'}" role="alert">${esc(message)}</div>`);
    main.prepend(box);
  }

  async function act(button, work, done) {
    button.disabled = true;
    try {
      const result = await work();
      if (done) flash(done(result), false);
      await refresh();
    } catch (error) {
      flash(error instanceof ApiError ? `${error.code}: ${error.message}` : String(error), true);
    } finally {
      button.disabled = false;
    }
  }

  // ---------- pieces ----------
  function commitHtml(current, author) {
    if (!current) return '<div class="commit muted">nothing deployed yet</div>';
    return `<div class="commit"><span class="mono">${esc(short(current.sha))}</span>
      <span class="msg">${esc(firstLine(current.message) || '(no message)')}</span>
      <span class="meta">${author ? esc(author) + ' · ' : ''}${timeTag(current.deployed_at)}</span></div>`;
  }

  /* A stage as parts: [name and status, commit, what is going on, actions]. The stack page patches each
   * part on its own, so its buttons are replaced only when the buttons themselves change. */
  function stageParts(stage, authors, withActions) {
    const waiting = stage.awaiting_approval;
    const extra = [];
    if (waiting) {
      extra.push(`<div class="commit"><strong>Approval waiting</strong> for <a href="${link.release(waiting)}">${esc(waiting)}</a></div>`);
    } else if (stage.locked_by) {
      extra.push(`<div class="commit">Deploying <a href="${link.release(stage.locked_by)}">${esc(stage.locked_by)}</a></div>`);
    }
    if (stage.waiting && stage.waiting.length) {
      extra.push(`<div class="commit muted">${stage.waiting.length} release(s) waiting for this stage</div>`);
    }
    if (stage.pin) {
      extra.push(`<div class="commit"><span class="badge s-wait">pinned</span> to ${esc(short(stage.pin.sha))} by ${esc(stage.pin.by)}: ${esc(stage.pin.reason)}</div>`);
    }
    let actions = '';
    if (withActions) {
      const buttons = [
        `<button type="button" data-action="promote" data-stage="${esc(stage.name)}">Promote…</button>`,
        `<button type="button" class="danger" data-action="rollback" data-stage="${esc(stage.name)}">Roll back…</button>`,
      ];
      if (stage.pin) buttons.push(`<button type="button" data-action="unpin" data-stage="${esc(stage.name)}">Unpin…</button>`);
      actions = `<div class="actions">${buttons.join('')}</div>`;
    }
    const current = stage.current_release;
    return {
      key: stage.name,
      attrs: { 'data-stage': stage.name },
      className: `stage${waiting ? ' attention' : ''}`,
      parts: [
        `<div class="name"><span>${esc(stage.name)}</span>${badge(waiting ? 'AWAITING_APPROVAL' : stage.status)}</div>`,
        commitHtml(current, current ? authors.get(current.release_id) : ''),
        extra.join(''),
        actions,
      ],
    };
  }

  function stageBox(stage, authors) {
    const item = stageParts(stage, authors, false);
    return `<div class="${item.className}" data-stage="${esc(stage.name)}">${item.parts.map((p) => `<div>${p}</div>`).join('')}</div>`;
  }

  /* Keep `container`'s children one per item, in order, keyed; each part is patched only when it changed. */
  function syncList(container, items, tag, partTag) {
    const existing = new Map();
    for (const child of container.children) existing.set(child.dataset.key, child);
    let previous = null;
    for (const item of items) {
      let node = existing.get(item.key);
      if (!node) {
        node = document.createElement(tag);
        node.dataset.key = item.key;
        for (const [name, value] of Object.entries(item.attrs || {})) node.setAttribute(name, value);
        for (let i = 0; i < item.parts.length; i++) node.appendChild(document.createElement(partTag));
      }
      existing.delete(item.key);
      if (node.className !== (item.className || '')) node.className = item.className || '';
      item.parts.forEach((html, i) => {
        const part = node.children[i];
        if (part.dataset.html !== html) {
          part.innerHTML = html;
          part.dataset.html = html;
        }
        if (item.spans && item.spans[i]) part.colSpan = item.spans[i];
      });
      const expected = previous ? previous.nextElementSibling : container.firstElementChild;
      if (node !== expected) container.insertBefore(node, expected);
      previous = node;
    }
    for (const stale of existing.values()) stale.remove();
  }

  async function authorsOf(stacks) {
    const authors = new Map();
    const ids = new Set();
    for (const stack of stacks) for (const stage of stack.stages) if (stage.current_release) ids.add(stage.current_release.release_id);
    await Promise.all([...ids].map(async (id) => {
      try { authors.set(id, (await releaseView(id)).author); } catch (e) { authors.set(id, ''); }
    }));
    return authors;
  }

  // ---------- overview ----------
  async function overview() {
    document.title = 'Stagecoach · stacks';
    const body = await api('GET', '/stacks', undefined, { limit: 100 });
    const authors = await authorsOf(body.stacks);
    region(main, 'title', '<h1>Stacks</h1>');
    if (!body.stacks.length) {
      region(main, 'stacks', '<p class="panel">No stacks yet. Create one with <code>stagecoach stacks create</code>.</p>');
      return;
    }
    const cards = body.stacks.map((stack) => {
      const waiting = stack.stages.filter((s) => s.awaiting_approval).length;
      return `<article class="panel stack-card" data-stack="${esc(stack.id)}">
        <h2><a href="${link.stack(stack.id)}">${esc(stack.name)}</a> <span class="muted mono">${esc(stack.id)}</span>
        ${waiting ? `<span class="badge s-wait">${waiting} approval${waiting > 1 ? 's' : ''} waiting</span>` : ''}</h2>
        <div class="muted">${esc(stack.repository.full_name)} · ${esc(stack.execution_mode.toLowerCase())}</div>
        <div class="pipeline">${stack.stages.map((s) => stageBox(s, authors)).join('')}</div>
      </article>`;
    });
    region(main, 'stacks', cards.join('') + (body.next_token ? '<p class="muted">Showing the first 100 stacks.</p>' : ''));
  }

  // ---------- stack page ----------
  const metricsState = { stage: null, days: 30, countdown: 0, stages: [] };

  function changesHtml(changes, summary) {
    if (!changes) return '<p class="muted">No change-set preview for this stage.</p>';
    if (!changes.length) return '<p class="muted">The change set changes nothing.</p>';
    const items = changes.map((c) => `<li><strong>${esc(c.action)}</strong> <span class="mono">${esc(c.logical_id)}</span>
      <span class="muted">${esc(c.resource_type)}</span>${c.replacement === 'True' ? ' <span class="badge s-fail">replacement</span>' : ''}</li>`);
    const counts = summary ? `<p class="muted">${summary.add} to add, ${summary.modify} to modify, ${summary.remove} to remove</p>` : '';
    return `${counts}<ul class="changes">${items.join('')}</ul>`;
  }

  /* One approval form per (release, stage) while it waits; created once, so typed comments survive. */
  function syncApprovals(container, waits) {
    const keys = new Set(waits.map((w) => `${w.release.id}/${w.stage.name}`));
    for (const form of container.querySelectorAll('form.approval')) {
      if (!keys.has(form.dataset.key)) form.remove();
    }
    for (const { release, stage } of waits) {
      const key = `${release.id}/${stage.name}`;
      if (container.querySelector(`form.approval[data-key="${CSS.escape(key)}"]`)) continue;
      const form = document.createElement('form');
      form.className = 'panel approval';
      form.dataset.key = key;
      const commentId = `comment-${release.id}-${stage.name}`;
      form.innerHTML = `<h3>Approve <span class="mono">${esc(stage.name)}</span> for ${esc(short(release.sha))}
          “${esc(firstLine(release.message))}”</h3>
        <p class="muted">Release <a href="${link.release(release.id)}">${esc(release.id)}</a> by ${esc(release.author || 'unknown')},
          waiting since ${timeTag((stage.approval || {}).requested_at || stage.started_at)}</p>
        ${changesHtml(stage.changes, stage.change_summary)}
        <label for="${esc(commentId)}">Comment (optional)</label>
        <textarea id="${esc(commentId)}" name="comment" maxlength="1000"></textarea>
        <div class="actions">
          <button type="button" class="primary" data-decision="approve">Approve ${esc(stage.name)}</button>
          <button type="button" class="danger" data-decision="reject">Reject</button>
        </div>`;
      for (const button of form.querySelectorAll('button[data-decision]')) {
        button.addEventListener('click', () => {
          const decision = button.dataset.decision;
          const comment = form.comment.value.trim();
          act(button, () => api('POST', `/releases/${encodeURIComponent(release.id)}/stages/${encodeURIComponent(stage.name)}/${decision}`,
            comment ? { comment } : {}), () => `${stage.name} ${decision === 'approve' ? 'approved' : 'rejected'} for ${release.id}`);
        });
      }
      container.appendChild(form);
    }
    const empty = container.querySelector('.none');
    if (waits.length && empty) empty.remove();
    if (!waits.length && !empty) container.insertAdjacentHTML('beforeend', '<p class="muted none">Nothing waits for approval.</p>');
  }

  function releaseRow(release, detail) {
    const stages = detail ? detail.stages.map((s) => `<span title="${esc(s.name)}: ${esc(s.status)}">${esc(s.name)} ${badge(s.status)}</span>`).join(' ') : '';
    const cancel = ACTIVE.includes(release.status)
      ? `<button type="button" class="danger" data-action="cancel" data-release="${esc(release.id)}">Cancel…</button>` : '';
    return {
      key: release.id,
      attrs: { 'data-release': release.id },
      parts: [
        `<a href="${link.release(release.id)}" class="mono">${esc(release.id.slice(-8))}</a><br>${badge(release.status)}`,
        `<span class="mono">${esc(short(release.sha))}</span> ${esc(firstLine(release.message))}<br>
        <span class="muted">${esc(release.author || '')} · ${esc(release.trigger)} · ${timeTag(release.received_at)}</span>`,
        `<div class="stages-cell">${stages}</div>`,
        esc(duration(release.duration_seconds)),
        cancel,
      ],
    };
  }

  function levelBadge(level) {
    return level ? `<span class="badge level-${esc(level)}">${esc(level)}</span>` : '<span class="badge s-off">no data</span>';
  }

  /* Deploys per day as bars (green: successful deploys, red on top: failed changes); the SVG stretches to
   * the panel's width, its labels are HTML so that they keep their size. */
  function chartSvg(daily) {
    const width = 700;
    const height = 100;
    const top = Math.max(1, ...daily.map((d) => d.deployments + d.failures));
    const step = width / Math.max(1, daily.length);
    const barWidth = Math.max(1, step * 0.7);
    const bars = daily.map((d, i) => {
      const x = (i * step).toFixed(1);
      const okHeight = (d.deployments / top) * height;
      const failHeight = (d.failures / top) * height;
      return `<g><title>${esc(d.date)}: ${d.deployments} deploys, ${d.failures} failed changes</title>
        <rect class="bar-ok" x="${x}" y="${(height - okHeight).toFixed(1)}" width="${barWidth.toFixed(1)}" height="${okHeight.toFixed(1)}"></rect>
        <rect class="bar-fail" x="${x}" y="${(height - okHeight - failHeight).toFixed(1)}" width="${barWidth.toFixed(1)}" height="${failHeight.toFixed(1)}"></rect></g>`;
    });
    const first = daily.length ? daily[0].date : '';
    const last = daily.length ? daily[daily.length - 1].date : '';
    const total = daily.reduce((sum, d) => sum + d.deployments, 0);
    return `<figure class="chart-box"><figcaption class="muted">Deploys per day (green) and failed changes (red), at most ${top} a day</figcaption>
      <svg class="chart" viewBox="0 0 ${width} ${height}" preserveAspectRatio="none" role="img"
        aria-label="${total} deploys from ${esc(first)} to ${esc(last)}">
      <line class="axis" x1="0" y1="${height}" x2="${width}" y2="${height}"></line>${bars.join('')}</svg>
      <div class="chart-labels muted"><span>${esc(first)}</span><span>${esc(last)}</span></div></figure>`;
  }

  function metricsHtml(m) {
    const f = m.deployment_frequency;
    const tiles = [
      ['Deployment frequency', `${f.per_week.toFixed(1)}/week`, `${f.deployments} deploys · ${f.bucket}`, f.level],
      ['Lead time for changes', duration(m.lead_time.median_seconds), `median of ${m.lead_time.samples}`, m.lead_time.level],
      ['Change failure rate', m.change_failure_rate.rate === null ? '—' : `${Math.round(m.change_failure_rate.rate * 100)}%`,
        `${m.change_failure_rate.failed} of ${m.change_failure_rate.deployments} changes`, m.change_failure_rate.level],
      ['Time to restore', duration(m.time_to_restore.median_seconds),
        `median of ${m.time_to_restore.samples}${m.time_to_restore.failing_now ? ' · failing now' : ''}`, m.time_to_restore.level],
    ];
    return `<div class="grid4">${tiles.map(([label, value, sub, level]) => `<div class="metric" data-metric="${esc(label)}">
      <div class="label">${esc(label)}</div><div class="value">${esc(value)}</div>
      <div class="muted">${esc(sub)}</div>${levelBadge(level)}</div>`).join('')}</div>
      ${chartSvg(m.daily)}
      <p class="muted">${esc(m.stage)} · last ${m.window.days} days · ${m.releases_read} releases read${m.truncated ? ' (older ones left out)' : ''}</p>`;
  }

  function metricsControls(stages) {
    const options = stages.map((s) => `<option value="${esc(s.name)}"${s.name === metricsState.stage ? ' selected' : ''}>${esc(s.name)}</option>`);
    const days = [7, 30, 90, 365].map((d) => `<option value="${d}"${d === metricsState.days ? ' selected' : ''}>${d} days</option>`);
    return `<h2 id="metrics-title">DORA metrics</h2><div class="controls">
      <label>Stage <select id="metrics-stage">${options.join('')}</select></label>
      <label>Window <select id="metrics-days">${days.join('')}</select></label></div>`;
  }

  async function loadMetrics(stackId) {
    const m = await api('GET', `/stacks/${encodeURIComponent(stackId)}/metrics`, undefined,
      { stage: metricsState.stage, days: metricsState.days });
    region(document.getElementById('metrics'), 'body', metricsHtml(m));
  }

  async function stackPage(stackId) {
    const stack = await api('GET', `/stacks/${encodeURIComponent(stackId)}`);
    document.title = `Stagecoach · ${stack.name}`;
    const releases = await api('GET', `/stacks/${encodeURIComponent(stackId)}/releases`, undefined, { limit: 15 });
    pageData.stack = stack; // the actions read it: set before anything is drawn
    pageData.releases = releases.releases;
    const authors = await authorsOf([stack]);
    const details = new Map();
    await Promise.all(releases.releases.slice(0, 15).map(async (r) => {
      try { details.set(r.id, await releaseView(r.id, ACTIVE.includes(r.status))); } catch (e) { /* shown without stages */ }
    }));
    region(main, 'title', `<h1>${esc(stack.name)} <span class="muted mono">${esc(stack.id)}</span></h1>
      <p class="muted">${esc(stack.repository.full_name)} · ${esc(stack.execution_mode.toLowerCase())} · <a href="${link.home()}">all stacks</a></p>`);
    const pipeline = region(main, 'pipeline', '<h2>Pipeline</h2><div class="pipeline" id="pipeline"></div>');
    syncList(pipeline.querySelector('#pipeline'), stack.stages.map((s) => stageParts(s, authors, true)), 'div', 'div');
    const approvalSection = region(main, 'approvals', '<h2>Waiting for approval</h2><div id="approval-forms"></div>');
    const waits = [];
    for (const stage of stack.stages) {
      if (!stage.awaiting_approval) continue;
      try {
        const release = await releaseView(stage.awaiting_approval, true);
        const run = release.stages.find((s) => s.name === stage.name);
        if (run && run.status === 'AWAITING_APPROVAL') waits.push({ release, stage: run });
      } catch (e) { /* next refresh */ }
    }
    syncApprovals(approvalSection.querySelector('#approval-forms'), waits);
    const table = region(main, 'releases', `<h2>Recent releases</h2><div class="panel"><table class="releases">
      <thead><tr><th>Release</th><th>Commit</th><th>Stages</th><th>Duration</th><th><span class="visually-hidden">Actions</span></th></tr></thead>
      <tbody id="release-rows"></tbody></table></div>`);
    const rows = releases.releases.map((r) => releaseRow(r, details.get(r.id)));
    if (!rows.length) rows.push({ key: 'none', parts: ['<span class="muted">No releases yet.</span>'], spans: [5] });
    syncList(table.querySelector('#release-rows'), rows, 'tr', 'td');
    const metricsSection = region(main, 'metrics-section', '<div class="panel" id="metrics"></div>');
    const names = stack.stages.map((s) => s.name);
    if (!metricsState.stage || !names.includes(metricsState.stage)) metricsState.stage = names[names.length - 1];
    const box = metricsSection.querySelector('#metrics');
    if (metricsState.stages.join() !== names.join()) {
      metricsState.stages = names;
      region(box, 'controls', metricsControls(stack.stages));
      metricsState.countdown = 0;
    }
    if (metricsState.countdown-- <= 0) {
      metricsState.countdown = METRICS_EVERY;
      await loadMetrics(stackId);
    }
  }

  const pageData = { stack: null, releases: [] };

  function releaseOptions(stageName, forRollback) {
    const stage = pageData.stack.stages.find((s) => s.name === stageName);
    const seen = new Set();
    const options = [];
    const candidates = forRollback ? (stage.previous_releases || []).map((p) => ({ id: p.release_id, sha: p.sha, message: p.message }))
      : pageData.releases.filter((r) => r.artifact).map((r) => ({ id: r.id, sha: r.sha, message: r.message }));
    for (const c of candidates) {
      if (seen.has(c.id)) continue;
      seen.add(c.id);
      options.push(`<option value="${esc(c.id)}">${esc(short(c.sha))} ${esc(firstLine(c.message).slice(0, 60))} (${esc(c.id.slice(-8))})</option>`);
    }
    return options;
  }

  async function onStackAction(button) {
    const stackId = pageData.stack ? pageData.stack.id : '';
    const stage = button.dataset.stage;
    const action = button.dataset.action;
    if (action === 'cancel') {
      const id = button.dataset.release;
      const values = await confirmAction(`Cancel release ${id}?`,
        `<p>The release ends CANCELLED and frees its stages. A deploy in progress is stopped by CloudFormation's own rollback.</p>
         <label for="cancel-reason">Reason (optional)</label><input type="text" id="cancel-reason" name="reason" maxlength="500">`, 'Cancel release');
      if (!values) return;
      await act(button, () => api('POST', `/releases/${encodeURIComponent(id)}/cancel`, values.reason ? { reason: values.reason } : {}),
        () => `Release ${id} cancelled`);
      return;
    }
    if (action === 'promote') {
      const options = releaseOptions(stage, false);
      if (!options.length) { flash('No built release to promote yet.', true); return; }
      const values = await confirmAction(`Deploy a release to ${stage}?`,
        `<p>Deploys the chosen release's build to <strong>${esc(stage)}</strong> (a redeploy if it already runs it).</p>
         <label for="promote-release">Release</label><select id="promote-release" name="release_id">${options.join('')}</select>`, 'Deploy');
      if (!values) return;
      await act(button, () => api('POST', `/stacks/${encodeURIComponent(stackId)}/stages/${encodeURIComponent(stage)}/deployments`,
        { release_id: values.release_id }), (r) => `Deploying ${values.release_id} to ${stage}: release ${r.id || ''}`);
      return;
    }
    if (action === 'rollback') {
      const options = releaseOptions(stage, true);
      const values = await confirmAction(`Roll back ${stage}?`,
        `<p>Deploys an earlier release's build to <strong>${esc(stage)}</strong> and pins the stage: automatic releases stop before it until you unpin.</p>
         <label for="rollback-release">Release</label><select id="rollback-release" name="release_id">
           <option value="">the one before the current release</option>${options.join('')}</select>
         <label for="rollback-reason">Reason (required)</label><input type="text" id="rollback-reason" name="reason" required maxlength="500">`, 'Roll back');
      if (!values) return;
      const body = { reason: values.reason };
      if (values.release_id) body.release_id = values.release_id;
      await act(button, () => api('POST', `/stacks/${encodeURIComponent(stackId)}/stages/${encodeURIComponent(stage)}/rollback`, body),
        (r) => `Rolling back ${stage}: release ${r.id || ''}`);
      return;
    }
    if (action === 'unpin') {
      const values = await confirmAction(`Unpin ${stage}?`, '<p>Automatic releases deploy this stage again.</p>', 'Unpin');
      if (!values) return;
      await act(button, () => api('DELETE', `/stacks/${encodeURIComponent(stackId)}/stages/${encodeURIComponent(stage)}/pin`),
        () => `${stage} unpinned`);
    }
  }

  // ---------- release page ----------
  function cfnConsole(stackName, arn) {
    const regionName = (arn || '').split(':')[3] || 'us-east-1';
    return `https://${regionName}.console.aws.amazon.com/cloudformation/home?region=${regionName}#/stacks?filteringText=${encodeURIComponent(stackName)}`;
  }

  function timelineHtml(release) {
    const start = Date.parse(release.started_at || release.received_at);
    const end = release.ended_at ? Date.parse(release.ended_at) : Date.now();
    const span = Math.max(1, end - start);
    const items = release.stages.map((s) => {
      const from = s.started_at ? Date.parse(s.started_at) : null;
      const to = s.ended_at ? Date.parse(s.ended_at) : (from ? Date.now() : null);
      const bar = from ? `<div class="bar ${statusClass(s.status)}" style="margin-left:${(((from - start) / span) * 100).toFixed(1)}%;width:${(((to - from) / span) * 100).toFixed(1)}%"></div>` : '';
      const approval = s.approval && s.approval.decision
        ? `<div>Approval: <strong>${esc(s.approval.decision)}</strong> by ${esc(s.approval.by)} ${timeTag(s.approval.at)}${s.approval.comment ? ` — “${esc(s.approval.comment)}”` : ''}</div>` : '';
      const failure = s.error || s.cause ? `<div class="error-box"><strong>${esc(s.error || 'Error')}</strong> ${esc(s.cause || '')}</div>` : '';
      const cfn = onAws() ? ` · <a href="${esc(cfnConsole(`${release.stack_id}--${s.name}`, release.execution_arn))}" rel="noopener" target="_blank">CloudFormation stack</a>` : '';
      const summary = s.change_summary ? ` · ${s.change_summary.add} add, ${s.change_summary.modify} modify, ${s.change_summary.remove} remove` : '';
      const superseded = s.superseded_by ? ` · superseded by <a href="${link.release(s.superseded_by)}">${esc(s.superseded_by)}</a>` : '';
      const waiting = s.waiting_for ? ` · waiting for <a href="${link.release(s.waiting_for)}">${esc(s.waiting_for)}</a>` : '';
      return `<li data-stage="${esc(s.name)}"><div><strong>${esc(s.name)}</strong><br>${badge(s.status)}</div>
        <div><span class="muted">${s.started_at ? timeTag(s.started_at) : 'not started'} · ${esc(duration(s.duration_seconds))}${summary}${superseded}${waiting}${cfn}</span>
        ${bar}${approval}${failure}${s.no_changes ? '<div class="muted">No changes to deploy.</div>' : ''}</div></li>`;
    });
    return `<h2>Timeline</h2><div class="panel"><ul class="timeline">${items.join('')}</ul></div>`;
  }

  /* The execution's states (GET /releases/{id}/history) in a <details> made once: it stays open or shut. */
  async function stepsOf(release) {
    const holder = region(main, 'steps', `<h2>Execution steps</h2><details class="panel" id="steps">
      <summary>Every state the Step Functions execution went through</summary><div id="steps-body"></div></details>`);
    const done = !ACTIVE.includes(release.status);
    if (pageData.steps && pageData.steps.release === release.id && pageData.steps.final) return;
    let history;
    try { history = await api('GET', `/releases/${encodeURIComponent(release.id)}/history`); } catch (e) { return; }
    pageData.steps = { release: release.id, final: done };
    const rows = (history.events || []).map((e) => `<tr><td>${esc(e.name)}</td><td>${esc(e.stage || '')}</td>
      <td>${badge(String(e.outcome || '').toUpperCase())}</td>
      <td>${esc(duration(e.duration_seconds))}</td><td>${esc(e.error || '')} ${esc(e.cause || '')}</td></tr>`);
    const body = history.started
      ? `<table><thead><tr><th>State</th><th>Stage</th><th>Outcome</th><th>Duration</th><th>Error</th></tr></thead>
         <tbody>${rows.join('')}</tbody></table>`
      : '<p class="muted">The execution has not started.</p>';
    region(holder.querySelector('#steps-body'), 'table', body);
  }

  async function releasePage(releaseId) {
    const release = await releaseView(releaseId, true);
    document.title = `Stagecoach · release ${release.id}`;
    const facts = [
      ['Status', badge(release.status)],
      ['Stack', `<a href="${link.stack(release.stack_id)}">${esc(release.stack_id)}</a>`],
      ['Commit', `<span class="mono">${esc(release.sha || '—')}</span>`],
      ['Ref', `<span class="mono">${esc(release.ref)}</span>`],
      ['Author', esc(release.author || '—')],
      ['Trigger', esc(release.trigger) + (release.source_release_id ? ` of <a href="${link.release(release.source_release_id)}">${esc(release.source_release_id)}</a>` : '') +
        (release.requested_by ? ` by ${esc(release.requested_by)}` : '')],
      ['Received', `${timeTag(release.received_at)}`],
      ['Duration', esc(duration(release.duration_seconds))],
    ];
    if (release.superseded_by) facts.push(['Superseded by', `<a href="${link.release(release.superseded_by)}">${esc(release.superseded_by)}</a>`]);
    if (release.cancelled_by) facts.push(['Cancelled by', esc(release.cancelled_by)]);
    if (onAws()) facts.push(['Execution', `<a href="${esc(release.console_url)}" rel="noopener" target="_blank">Step Functions console</a>`]);
    const failure = release.error || release.cause
      ? `<div class="error-box" id="failure"><strong>${esc(release.error || 'Failed')}</strong>${release.failed_stage ? ` at ${esc(release.failed_stage)}` : ''}: ${esc(release.cause || '')}</div>` : '';
    const cancel = ACTIVE.includes(release.status)
      ? `<div class="actions"><button type="button" class="danger" data-action="cancel" data-release="${esc(release.id)}">Cancel release…</button></div>` : '';
    region(main, 'title', `<h1>${esc(firstLine(release.message) || release.ref)}</h1>`);
    region(main, 'facts', `<div class="panel"><dl class="facts">${facts.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${v}</dd>`).join('')}</dl>${failure}</div>`);
    region(main, 'release-actions', cancel);
    const approvals = region(main, 'approvals', '<div id="approval-forms"></div>');
    syncApprovals(approvals.querySelector('#approval-forms'),
      release.stages.filter((s) => s.status === 'AWAITING_APPROVAL').map((stage) => ({ release, stage })));
    const noneNote = approvals.querySelector('.none');
    if (noneNote) noneNote.remove();
    region(main, 'timeline', timelineHtml(release));
    const build = release.build;
    const buildFacts = build ? `${badge(build.status)} ${esc(duration(build.duration_seconds))}${build.failed_phase ? ` · failed in ${esc(build.failed_phase)}` : ''}` : '<span class="muted">No build (deploys the build of its source release).</span>';
    let logHtml = '';
    if (build && (!pageData.log || pageData.log.release !== release.id || ACTIVE.includes(release.status) || !pageData.log.final)) {
      try {
        const log = await api('GET', `/releases/${encodeURIComponent(release.id)}/build-log`);
        pageData.log = { release: release.id, final: !ACTIVE.includes(release.status), body: log };
      } catch (e) { pageData.log = null; }
    }
    if (build && pageData.log) {
      const log = pageData.log.body;
      if (log.log !== null && log.log !== undefined) logHtml = `<pre class="log" id="build-log" tabindex="0">${esc(log.log)}</pre>`;
      else if (log.pointer && log.pointer['deep-link']) logHtml = `<p><a href="${esc(log.pointer['deep-link'])}" rel="noopener" target="_blank">Build log in CloudWatch Logs</a></p>`;
      else logHtml = '<p class="muted">No build log yet.</p>';
    }
    region(main, 'build', `<h2>Build</h2><div class="panel">${buildFacts}${logHtml}</div>`);
    await stepsOf(release);
    pageData.release = release;
  }

  // ---------- loop ----------
  let running = false;
  async function refresh() {
    if (running) return;
    running = true;
    try {
      if (page === 'stack') await stackPage(pageId);
      else if (page === 'release') await releasePage(pageId);
      else await overview();
      tickAges();
      const stale = main.querySelector(':scope > [data-region="error"]');
      if (stale) stale.remove();
      live.textContent = `Updated ${new Date().toLocaleTimeString()}`;
      live.dataset.state = 'ok';
    } catch (error) {
      live.textContent = 'Update failed';
      live.dataset.state = 'error';
      if (error instanceof ApiError && (error.status === 404 || error.status === 403)) {
        region(main, 'error', `<div class="error-box" role="alert">${esc(error.code)}: ${esc(error.message)}</div>`);
      }
    } finally {
      running = false;
    }
  }

  function start() {
    document.getElementById('home-link').href = link.home();
    setupSignIn();
    main.addEventListener('click', (event) => {
      const button = event.target.closest('button[data-action]');
      if (button) onStackAction(button).catch((error) => flash(String(error.message || error), true));
    });
    main.addEventListener('change', (event) => {
      if (event.target.id === 'metrics-stage') metricsState.stage = event.target.value;
      else if (event.target.id === 'metrics-days') metricsState.days = Number(event.target.value);
      else return;
      loadMetrics(pageId).catch((error) => flash(String(error.message || error), true));
    });
    refresh();
    setInterval(() => { if (!document.hidden) refresh(); }, REFRESH_MS);
    setInterval(tickAges, 1000);
  }

  start();
})();
