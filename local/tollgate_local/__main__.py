"""``python -m tollgate_local``: run the local runtime (see ``tollgate_local.runtime``)."""

# Imported under the guard only: the runtime's worker processes are spawned, and a spawned
# process imports this module again (as ``__mp_main__``); it must stay cheap and inert there.
if __name__ == "__main__":
    from tollgate_local.runtime import main

    raise SystemExit(main())
