-- What a Supabase project provides before any user SQL runs: the API roles, the auth helpers that
-- read the request's JWT claims, and the (empty) realtime publication. Taken from
-- supabase/postgres 00000000000000-initial-schema.sql and supabase/auth's migrations.

do $$
begin
    if not exists (select 1 from pg_roles where rolname = 'anon') then
        create role anon nologin noinherit;
    end if;
    if not exists (select 1 from pg_roles where rolname = 'authenticated') then
        create role authenticated nologin noinherit;
    end if;
    if not exists (select 1 from pg_roles where rolname = 'service_role') then
        create role service_role nologin noinherit bypassrls;
    end if;
    if not exists (select 1 from pg_roles where rolname = 'authenticator') then
        create role authenticator login noinherit;
    end if;
    if not exists (select 1 from pg_publication where pubname = 'supabase_realtime') then
        create publication supabase_realtime;
    end if;
end;
$$;

grant anon, authenticated, service_role to authenticator;
grant usage on schema public to anon, authenticated, service_role;
alter default privileges in schema public grant all on tables to anon, authenticated, service_role;
alter default privileges in schema public grant all on functions to anon, authenticated, service_role;
alter default privileges in schema public grant all on sequences to anon, authenticated, service_role;
alter role anon set statement_timeout = '3s';
alter role authenticated set statement_timeout = '8s';

create schema if not exists auth;
grant usage on schema auth to anon, authenticated, service_role;

create or replace function auth.uid() returns uuid language sql stable as $$
  select coalesce(nullif(current_setting('request.jwt.claim.sub', true), ''),
                  (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub'))::uuid
$$;

create or replace function auth.role() returns text language sql stable as $$
  select coalesce(nullif(current_setting('request.jwt.claim.role', true), ''),
                  (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role'))::text
$$;

create or replace function auth.jwt() returns jsonb language sql stable as $$
  select coalesce(nullif(current_setting('request.jwt.claim', true), ''),
                  nullif(current_setting('request.jwt.claims', true), ''))::jsonb
$$;

-- The fake Realtime's change capture (the real one decodes the WAL with wal2json, which is not
-- installed here). Rows land in an outbox in the writing transaction; NOTIFY carries only the
-- outbox id (payloads are capped at 8000 bytes) and is delivered at commit, in commit order.
create schema if not exists realtime_fake;

create table if not exists realtime_fake.changes (
    id               bigserial primary key,
    schema_name      text not null,
    table_name       text not null,
    op               text not null,
    record           jsonb,
    old_record       jsonb,
    commit_timestamp timestamptz not null default clock_timestamp()
);

create or replace function realtime_fake.capture() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_id bigint;
begin
    insert into realtime_fake.changes (schema_name, table_name, op, record, old_record)
    values (tg_table_schema, tg_table_name, tg_op,
            case when tg_op <> 'DELETE' then to_jsonb(new) end,
            case when tg_op <> 'INSERT' then to_jsonb(old) end)
    returning id into v_id;
    perform pg_notify('realtime_fake', v_id::text);
    return null;
end;
$$;
