"""The history of the persisted events: ``core`` (pure: what a query reads, which stored events it keeps, how
pages follow one another; its query in ``query``, its cursor in ``cursor``) and ``reader`` (JetStream: one page
of a query). The CLI's ``hedgebridge history``, the gateway's ``HISTORY`` request and the admin dashboard
(through the gateway) read it alike."""
