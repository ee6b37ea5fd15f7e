-- videoq schema for Supabase (PostgreSQL 15+).
-- Run it once in the Supabase SQL editor or with psql; running it again is harmless.

-- Tasks ------------------------------------------------------------------------------------------

create table if not exists public.video_tasks (
    id                      text primary key,
    user_id                 text not null default 'local',
    provider                text not null default 't8star',
    model                   text not null
        constraint video_tasks_model_check check (model in ('sora-2', 'sora-2-pro')),
    prompt                  text not null
        constraint video_tasks_prompt_check check (length(btrim(prompt)) > 0),
    aspect_ratio            text not null
        constraint video_tasks_aspect_ratio_check check (aspect_ratio in ('16:9', '9:16')),
    duration                integer not null
        constraint video_tasks_duration_check check (duration in (10, 15, 25)),
    hd                      boolean not null default false,
    image_count             integer not null default 0,
    image_bytes             integer not null default 0,
    status                  text not null default 'queued'
        constraint video_tasks_status_check
        check (status in ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    progress                integer not null default 0
        constraint video_tasks_progress_check check (progress between 0 and 100),
    attempt                 integer not null default 1
        constraint video_tasks_attempt_check check (attempt >= 1),
    upstream_task_id        text,
    video_url               text,
    error_message           text,
    message_id              text,
    polls                   integer not null default 0
        constraint video_tasks_polls_check check (polls >= 0),
    polls_without_progress  integer not null default 0,
    upstream_status         text,
    last_polled_at          timestamptz,
    next_poll_at            timestamptz,
    step_lease_until        timestamptz,
    upstream_key_ciphertext text,
    own_key                 boolean not null default false,
    created_at              timestamptz not null default now(),
    updated_at              timestamptz not null default now(),
    queued_at               timestamptz not null default now(),
    started_at              timestamptz,
    completed_at            timestamptz,
    version                 bigint not null default 1,
    -- 25 s videos and hd exist only on sora-2-pro.
    constraint video_tasks_pro_only_check
        check (model = 'sora-2-pro' or (duration <> 25 and not hd))
);

-- Columns added after the first release (no-ops on a fresh table).
alter table public.video_tasks add column if not exists queued_at timestamptz not null default now();
alter table public.video_tasks
    add column if not exists polls_without_progress integer not null default 0;
-- own_key: earlier versions marked an own-key attempt only by this note on the event that
-- queued it, so the column is filled from the notes once, when it is added.
do $$
begin
    if not exists (select 1 from information_schema.columns
                    where table_schema = 'public' and table_name = 'video_tasks'
                      and column_name = 'own_key') then
        alter table public.video_tasks
            add column if not exists own_key boolean not null default false;
        if to_regclass('public.task_events') is not null then
            update public.video_tasks set own_key = true
             where id in (select task_id from public.task_events
                           where detail = 'with the user''s own upstream key');
        end if;
    end if;
end;
$$;

create index if not exists video_tasks_created_at_idx
    on public.video_tasks (created_at desc);
create index if not exists video_tasks_status_created_at_idx
    on public.video_tasks (status, created_at desc);
create index if not exists video_tasks_user_id_created_at_idx
    on public.video_tasks (user_id, created_at desc);
create index if not exists video_tasks_status_updated_at_idx
    on public.video_tasks (status, updated_at);

-- Every write bumps version and updated_at, so readers can drop stale events.
create or replace function public.videoq_bump_version()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
    new.version := old.version + 1;
    new.updated_at := now();
    return new;
end;
$$;

drop trigger if exists video_tasks_bump_version on public.video_tasks;
create trigger video_tasks_bump_version
    before update on public.video_tasks
    for each row execute function public.videoq_bump_version();

-- History ----------------------------------------------------------------------------------------

create table if not exists public.task_events (
    id              bigserial primary key,
    task_id         text not null references public.video_tasks (id) on delete cascade,
    kind            text not null
        constraint task_events_kind_check
        check (kind in ('transition', 'poll', 'action', 'submit')),
    attempt         integer not null
        constraint task_events_attempt_check check (attempt >= 1),
    at              timestamptz not null default now(),
    from_status     text,
    to_status       text,
    actor           text,
    upstream_status text,
    progress        integer,
    http_status     integer,
    latency_ms      double precision,
    detail          text
);

create index if not exists task_events_task_id_idx on public.task_events (task_id, id);

-- Writes that must be atomic (PostgREST runs one function call in one transaction) -----------

-- Insert a task (the columns present in p_task; the others take their defaults) and, optionally,
-- its first history event.
drop function if exists public.videoq_insert_task(jsonb, jsonb);
create or replace function public.videoq_insert_task(
    p_task jsonb, p_event jsonb default null, p_images jsonb default null
)
returns setof public.video_tasks
language plpgsql
set search_path = ''
as $$
declare
    v_columns text;
begin
    select string_agg(format('%I', key), ', ') into v_columns from jsonb_object_keys(p_task) as key;
    return query execute format(
        'insert into public.video_tasks (%1$s)
         select %1$s from jsonb_populate_record(null::public.video_tasks, $1)
         returning *', v_columns)
        using p_task;

    if p_event is not null then
        insert into public.task_events (task_id, kind, attempt, at, from_status, to_status,
                                        actor, upstream_status, progress, http_status,
                                        latency_ms, detail)
        select e.task_id, e.kind, e.attempt, coalesce(e.at, now()), e.from_status, e.to_status,
               e.actor, e.upstream_status, e.progress, e.http_status, e.latency_ms, e.detail
        from jsonb_populate_record(null::public.task_events, p_event) as e;
    end if;
    if p_images is not null then
        insert into public.task_images (task_id, position, data)
        select p_task ->> 'id', i.position - 1, i.data
          from jsonb_array_elements_text(p_images) with ordinality as i (data, position);
    end if;
end;
$$;

-- Compare-and-set: apply p_changes (column -> new value) only if the row still has one of
-- p_statuses and the given attempt, polls and extra column values; append p_event only when it
-- applied. No row back means the row had moved on and nothing changed.
create or replace function public.videoq_update_task(
    p_id text,
    p_statuses text[],
    p_changes jsonb,
    p_attempt integer default null,
    p_polls integer default null,
    p_extra jsonb default null,
    p_event jsonb default null
)
returns setof public.video_tasks
language plpgsql
set search_path = ''
as $$
declare
    v_set text;
    v_row public.video_tasks;
    v_count bigint;
begin
    select coalesce(string_agg(format('%1$I = c.%1$I', key), ', '), 'id = t.id') into v_set
      from jsonb_object_keys(coalesce(p_changes, '{}'::jsonb)) as key;
    execute format(
        'update public.video_tasks as t set %s
           from jsonb_populate_record(null::public.video_tasks, $1) as c
          where t.id = $2
            and t.status = any ($3)
            and ($4::integer is null or t.attempt = $4)
            and ($5::integer is null or t.polls = $5)
            and ($6::jsonb is null or t is not distinct from jsonb_populate_record(t, $6))
         returning t.*', v_set)
        into v_row
        using coalesce(p_changes, '{}'::jsonb), p_id, p_statuses, p_attempt, p_polls, p_extra;
    get diagnostics v_count = row_count;
    if v_count = 0 then
        return;
    end if;

    if p_event is not null then
        insert into public.task_events (task_id, kind, attempt, at, from_status, to_status,
                                        actor, upstream_status, progress, http_status,
                                        latency_ms, detail)
        select p_id, e.kind, e.attempt, coalesce(e.at, now()), e.from_status, e.to_status,
               e.actor, e.upstream_status, e.progress, e.http_status, e.latency_ms, e.detail
        from jsonb_populate_record(null::public.task_events, p_event) as e;
    end if;

    return next v_row;
end;
$$;

-- Tasks per owner and status, kept by triggers in the writing transaction, so counting reads a
-- few rows instead of scanning the table (the dashboard header, /metrics and --until-idle ask
-- twice a second). Refilled from the table each time this file runs, under a lock that holds
-- writers off meanwhile; a truncate empties it.
create table if not exists public.video_task_counts (
    user_id text   not null,
    status  text   not null,
    tasks   bigint not null,
    primary key (user_id, status)
);

create or replace function public.videoq_keep_counts()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
    if tg_op = 'TRUNCATE' then
        delete from public.video_task_counts;
        return null;
    end if;
    if tg_op = 'UPDATE' then
        -- Both rows in one statement, in key order: two transitions at once (running to
        -- failed in one transaction, failed to queued in another) must never lock the two
        -- rows in opposite orders, which deadlocked.
        insert into public.video_task_counts as c (user_id, status, tasks)
        select k.user_id, k.status, k.delta
          from (values (old.user_id, old.status, -1), (new.user_id, new.status, 1))
               as k (user_id, status, delta)
         order by k.user_id, k.status
        on conflict (user_id, status) do update set tasks = c.tasks + excluded.tasks;
    elsif tg_op = 'DELETE' then
        update public.video_task_counts set tasks = tasks - 1
         where user_id = old.user_id and status = old.status;
    else
        insert into public.video_task_counts as c (user_id, status, tasks)
        values (new.user_id, new.status, 1)
        on conflict (user_id, status) do update set tasks = c.tasks + 1;
    end if;
    return null;
end;
$$;

drop trigger if exists videoq_counts_insert_delete on public.video_tasks;
create trigger videoq_counts_insert_delete
    after insert or delete on public.video_tasks
    for each row execute function public.videoq_keep_counts();
drop trigger if exists videoq_counts_update on public.video_tasks;
create trigger videoq_counts_update
    after update of status, user_id on public.video_tasks
    for each row
    when (old.status is distinct from new.status or old.user_id is distinct from new.user_id)
    execute function public.videoq_keep_counts();
drop trigger if exists videoq_counts_truncate on public.video_tasks;
create trigger videoq_counts_truncate
    after truncate on public.video_tasks
    for each statement execute function public.videoq_keep_counts();

do $$
begin
    lock table public.video_tasks in share row exclusive mode;
    delete from public.video_task_counts;
    insert into public.video_task_counts (user_id, status, tasks)
    select t.user_id, t.status, count(*) from public.video_tasks as t group by 1, 2;
end;
$$;

-- Tasks per status in one round trip (PostgREST has no GROUP BY without aggregates enabled).
create or replace function public.videoq_count_by_status(p_user_id text default null)
returns table (status text, tasks bigint)
language sql
stable
set search_path = ''
as $$
    select c.status, sum(c.tasks)::bigint
      from public.video_task_counts as c
     where p_user_id is null or c.user_id = p_user_id
     group by c.status;
$$;
-- Prune: finished tasks in p_statuses last written before p_before go, with their history and
-- images (on delete cascade), at most p_limit per call; p_dry_run only counts them all.
create or replace function public.videoq_prune_tasks(
    p_before timestamptz,
    p_statuses text[],
    p_limit integer default 500,
    p_dry_run boolean default false
)
returns table (status text, tasks bigint)
language plpgsql
set search_path = ''
as $$
begin
    if exists (select 1 from unnest(p_statuses) as u (s)
                where u.s not in ('succeeded', 'failed', 'cancelled')) then
        raise exception using errcode = '22023', message = 'only finished tasks are pruned';
    end if;
    if p_dry_run then
        return query
            select t.status, count(*) from public.video_tasks as t
             where t.status = any (p_statuses) and t.updated_at < p_before
             group by t.status;
        return;
    end if;
    return query
        with doomed as (
            select t.id from public.video_tasks as t
             where t.status = any (p_statuses) and t.updated_at < p_before
             limit p_limit
             for update skip locked
        ), gone as (
            delete from public.video_tasks as t using doomed as d
             where t.id = d.id and t.status = any (p_statuses)
            returning t.status
        )
        select g.status, count(*) from gone as g group by g.status;
end;
$$;
-- QStash messages per UTC day, published and delivered (QStash bills both, retries included):
-- the daily budget (VIDEOQ_QSTASH_DAILY_BUDGET) reads it, /metrics and the dashboard show it.
create table if not exists public.qstash_usage (
    day       date primary key,
    published bigint not null default 0 check (published >= 0),
    delivered bigint not null default 0 check (delivered >= 0)
);
alter table public.qstash_usage enable row level security;

-- Add to one day's counts in one statement, so hosts counting at once never lose an increment.
create or replace function public.videoq_add_usage(
    p_day date, p_published bigint default 0, p_delivered bigint default 0
)
returns table (published bigint, delivered bigint)
language sql
set search_path = ''
as $$
    insert into public.qstash_usage as u (day, published, delivered)
    values (p_day, p_published, p_delivered)
    on conflict (day) do update
       set published = u.published + excluded.published,
           delivered = u.delivered + excluded.delivered
    returning u.published, u.delivered;
$$;

-- A task's images live apart from its row, so a Realtime change payload stays small (over
-- 1,024 KB, Realtime blanks every field over 64 bytes). Not in the realtime publication.
create table if not exists public.task_images (
    task_id  text not null references public.video_tasks (id) on delete cascade,
    position integer not null,
    data     text not null,
    primary key (task_id, position)
);
-- Projects set up before task_images kept the images in the row: move them out, once.
alter table public.video_tasks add column if not exists image_count integer not null default 0;
alter table public.video_tasks add column if not exists image_bytes integer not null default 0;
do $$
begin
    if exists (select 1 from information_schema.columns
                where table_schema = 'public' and table_name = 'video_tasks'
                  and column_name = 'images') then
        insert into public.task_images (task_id, position, data)
        select t.id, i.position - 1, i.data
          from public.video_tasks as t,
               jsonb_array_elements_text(t.images) with ordinality as i (data, position)
        on conflict do nothing;
        update public.video_tasks as t
           set image_count = coalesce(s.n, 0), image_bytes = coalesce(s.bytes, 0)
          from (select task_id, count(*) as n, sum(octet_length(data)) as bytes
                  from public.task_images group by task_id) as s
         where s.task_id = t.id;
        alter table public.video_tasks drop column images;
    end if;
end;
$$;

-- Access: the service role (the worker, the CLI, the HTTP service) does everything; a signed-in
-- user may only read their own tasks and their history; anonymous keys see nothing. ------------

alter table public.video_tasks enable row level security;
alter table public.task_events enable row level security;
alter table public.task_images enable row level security;
alter table public.video_task_counts enable row level security;
revoke all on table public.video_task_counts from anon, authenticated;
grant all on table public.video_task_counts to service_role;
revoke all on function public.videoq_keep_counts() from public, anon, authenticated;

revoke all on table public.video_tasks, public.task_events, public.task_images
    from anon, authenticated;
revoke all on sequence public.task_events_id_seq from anon, authenticated;
grant select on table public.video_tasks, public.task_events, public.task_images to authenticated;
grant all on table public.video_tasks, public.task_events, public.task_images to service_role;
grant usage, select on sequence public.task_events_id_seq to service_role;

drop policy if exists video_tasks_owner_read on public.video_tasks;
create policy video_tasks_owner_read on public.video_tasks
    for select to authenticated
    using (user_id = (select auth.uid())::text);

drop policy if exists task_images_owner_read on public.task_images;
create policy task_images_owner_read on public.task_images
    for select to authenticated
    using (exists (select 1 from public.video_tasks as t
                    where t.id = task_id and t.user_id = (select auth.uid())::text));

drop policy if exists task_events_owner_read on public.task_events;
create policy task_events_owner_read on public.task_events
    for select to authenticated
    using (exists (select 1 from public.video_tasks as t
                    where t.id = task_id and t.user_id = (select auth.uid())::text));

revoke all on function public.videoq_insert_task(jsonb, jsonb, jsonb)
    from public, anon, authenticated;
revoke all on function public.videoq_update_task(text, text[], jsonb, integer, integer, jsonb, jsonb)
    from public, anon, authenticated;
revoke all on function public.videoq_count_by_status(text) from public, anon, authenticated;
revoke all on function public.videoq_prune_tasks(timestamptz, text[], integer, boolean)
    from public, anon, authenticated;
revoke all on function public.videoq_bump_version() from public, anon, authenticated;
grant execute on function public.videoq_insert_task(jsonb, jsonb, jsonb) to service_role;
grant execute on function public.videoq_update_task(text, text[], jsonb, integer, integer, jsonb, jsonb)
    to service_role;
grant execute on function public.videoq_count_by_status(text) to service_role;
grant execute on function public.videoq_prune_tasks(timestamptz, text[], integer, boolean)
    to service_role;
-- QStash usage is the operator's business: only the service role reads or counts it.
revoke all on table public.qstash_usage from anon, authenticated;
grant all on table public.qstash_usage to service_role;
revoke all on function public.videoq_add_usage(date, bigint, bigint)
    from public, anon, authenticated;
grant execute on function public.videoq_add_usage(date, bigint, bigint) to service_role;

-- Realtime: full old rows in UPDATE/DELETE events, and the table in the publication ----------

alter table public.video_tasks replica identity full;

do $$
begin
    if not exists (select 1 from pg_publication where pubname = 'supabase_realtime') then
        create publication supabase_realtime;
    end if;
    if not exists (select 1 from pg_publication
                    where pubname = 'supabase_realtime' and puballtables)
       and not exists (select 1 from pg_publication_tables
                        where pubname = 'supabase_realtime'
                          and schemaname = 'public' and tablename = 'video_tasks') then
        alter publication supabase_realtime add table public.video_tasks;
    end if;
end;
$$;

-- `videoq doctor` asks the database what the API cannot show: whether the tables exist, whether
-- realtime publishes video_tasks, and whether the caller can write (a probe row, rolled back). ----

create or replace function public.videoq_doctor()
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_write text := 'ok';
begin
    begin
        insert into public.video_tasks (id, model, prompt, aspect_ratio, duration)
        values ('videoq-doctor-probe-' || gen_random_uuid(), 'sora-2', 'doctor probe', '16:9', 10);
        raise exception using errcode = 'P0001', message = 'videoq_doctor_rollback';
    exception
        when others then
            if sqlerrm <> 'videoq_doctor_rollback' then
                v_write := sqlstate || ' ' || sqlerrm;
            end if;
    end;
    return jsonb_build_object(
        'role', current_user,
        'video_tasks', to_regclass('public.video_tasks') is not null,
        'task_events', to_regclass('public.task_events') is not null,
        'realtime', exists (select 1 from pg_publication
                             where pubname = 'supabase_realtime' and puballtables)
                    or exists (select 1 from pg_publication_tables
                                where pubname = 'supabase_realtime'
                                  and schemaname = 'public' and tablename = 'video_tasks'),
        'write', v_write
    );
end;
$$;

revoke all on function public.videoq_doctor() from public, anon, authenticated;
grant execute on function public.videoq_doctor() to service_role;

-- Let PostgREST see the new tables and functions without a restart.
notify pgrst, 'reload schema';
