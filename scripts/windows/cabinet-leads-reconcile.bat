@echo off
rem One reconciliation run for Windows Task Scheduler. Edit the two paths below.
rem chcp 65001: UTF-8 console, so names with accents or emoji never break the output.
chcp 65001 >nul
setlocal
set "PROJECT_DIR=C:\cabinet-leads"
set "LOG_FILE=C:\cabinet-leads\logs\reconcile.log"
rem DATABASE_URL comes from the machine's environment (System Properties), never from this file.
set "LOG_FORMAT=json"
cd /d "%PROJECT_DIR%" || exit /b 2
if not exist "%PROJECT_DIR%\logs" mkdir "%PROJECT_DIR%\logs"
call npx --no-install cabinet-leads reconcile --days-back 30 --limit 2000 >> "%LOG_FILE%" 2>&1
exit /b %ERRORLEVEL%
