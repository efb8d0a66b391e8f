package app

import (
	"net/http"

	"github.com/labstack/echo/v4"
)

// live answers while the process can serve at all.
func (a *App) live(c echo.Context) error {
	c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
	return jsonBlob(c, http.StatusOK, []byte(`{"status":"live"}`))
}

// ready is 200 only when every dependency answers and the process is not
// draining; the body names what failed.
func (a *App) ready(c echo.Context) error {
	ok, rep := a.health.Ready(c.Request().Context())
	status := http.StatusOK
	if !ok {
		status = http.StatusServiceUnavailable
	}
	c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
	return jsonBlob(c, status, mustJSON(rep))
}
